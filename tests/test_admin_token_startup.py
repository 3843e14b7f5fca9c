"""A service process started with a weak ADMIN_TOKEN stops at once with a message that
says how to make a good one, and never repeats the weak token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServiceProcess, free_port

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("token", ["a", "   ", "changeme-changeme", "x" * 40])
def test_a_weak_token_stops_the_service_at_startup(
    tmp_path: Path, service: Callable[..., ServiceProcess], token: str
) -> None:
    svc = service(
        ROOT / "tests" / "services" / "dashboard",
        {
            "MICROSERVICE_NAME": "weak",
            "QUEUE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
            "HTTP_PORT": str(free_port()),
            "ADMIN_TOKEN": token,
            "FLAKY_MARKER": str(tmp_path / "absent"),
        },
    )
    assert svc.wait(60) != 0
    out = svc.output()
    assert "ADMIN_TOKEN" in out
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in out
    if len(token) > 3:
        assert token not in out
