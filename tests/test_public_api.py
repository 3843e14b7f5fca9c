"""The public names promised by the design exist, and every package's __all__ is honest."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "usvc_core",
    "usvc_sqlite",
    "usvc_testing",
    "usvc_http",
    "usvc_oracle",
    "usvc_mongo",
]


def test_spec_names_migrate_by_changing_imports_alone() -> None:
    """The spec's public names are importable from the new packages."""
    from usvc_core import (  # noqa: F401
        Application,
        CircuitBreaker,
        CircuitOpenError,
        HealthRegistry,
        Job,
        JobStatus,
        RateLimiter,
        ServiceProvider,
        Status,
        WorkerSettings,
        action,
        logger,
    )
    from usvc_http import RestAPIConfig, RestAPIService  # noqa: F401


def test_queues_are_exported_from_the_testing_package() -> None:
    """usvc-testing re-exports the SQLite queue of usvc-sqlite, for CI and test use."""
    import usvc_sqlite as sqlite
    from usvc_testing import Durability, InMemoryQueue, SqliteQueue

    assert SqliteQueue is sqlite.SqliteQueue
    assert Durability is sqlite.Durability
    assert {d.value for d in Durability} >= {"full", "normal"}
    assert InMemoryQueue.__module__ == "usvc_testing.queues.memory"


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name: str) -> None:
    """Each package's __all__ is sorted and every name in it resolves."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    for attr in exported:
        assert getattr(module, attr) is not None, attr


def test_core_imports_no_adapter() -> None:
    """usvc_core never imports an adapter package, a web framework or a database driver."""
    import subprocess
    import sys

    code = (
        "import sys, usvc_core\n"
        "bad = [m for m in ('usvc_http','usvc_oracle','usvc_mongo','usvc_testing','fastapi',"
        "'oracledb','pymongo','aiosqlite','httpx','prometheus_client') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
