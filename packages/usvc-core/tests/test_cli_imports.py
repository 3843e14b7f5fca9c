"""The ``usvc`` command starts at once (issue 19 item 14): ``usvc --help`` and ``usvc jobs
ls`` import no web framework, no telemetry exporter, no adapter they do not use. Checked
on ``sys.modules`` of a real process; the CPU cost beside its floor is measured by
``bench/cli_startup.py`` (a ratio, not a timed test)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Module prefixes a command of the CLI must not import.
FORBIDDEN = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "prometheus_client",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "grpc",
    "usvc_http",
    "usvc_mongo",
    "usvc_oracle",
    "oracledb",
    "pymongo",
    "usvc_core.app",
    "usvc_core.worker",
    "croniter",
)

# Runs the console script's function and writes the imported modules' names at exit.
_PROBE = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["PROBE_OUT"], "w").write(json.dumps(sorted(sys.modules))))
from usvc_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _modules(args: list[str], workdir: Path) -> tuple[int, set[str], str]:
    out = workdir / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "HTTP_"))}
    env.update(
        MICROSERVICE_NAME="svc",
        QUEUE_URL="sqlite:///jobs.db",
        PROBE_OUT=str(out),
        # Would make the HTTP package's settings fail if they were read at all.
        HTTP_PORT="not-a-port",
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, set(json.loads(out.read_text())), proc.stdout + proc.stderr


def _forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith(FORBIDDEN))


@pytest.mark.slow
def test_help_and_jobs_ls_import_no_framework_exporter_or_unused_adapter(
    tmp_path: Path,
) -> None:
    # The queue file, made through the plugin loader (whichever package provides sqlite).
    from usvc_core.plugins import queue_from_settings
    from usvc_core.settings import WorkerSettings

    async def create() -> None:
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        queue = queue_from_settings(WorkerSettings(MICROSERVICE_NAME="svc", QUEUE_URL=url))
        await queue.open()
        await queue.close()

    asyncio.run(create())

    code, modules, output = _modules(["--help"], tmp_path)
    assert code == 0, output
    assert "usage: usvc" in output
    assert _forbidden(modules) == []
    assert "usvc_core.cli.parser" in modules
    # Help is argparse alone: not even the settings or the ports (each command's module
    # imports them when it runs).
    assert {"usvc_core.settings", "usvc_core.ports", "pydantic_settings"}.isdisjoint(modules)

    code, modules, output = _modules(["jobs", "ls"], tmp_path)
    assert code == 0, output
    assert "no jobs of svc match" in output
    assert _forbidden(modules) == []
    assert "usvc_sqlite" in modules  # the queue it uses, and no other adapter
    assert not any(m.startswith("usvc_testing") for m in modules)
