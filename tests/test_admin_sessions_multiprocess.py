"""Logout ends the session on every process (issue 19 item 4): two real service processes
share one SQLite queue; a session cookie copied before the logout on one of them is refused
by both afterwards, while a new login works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import ROOT, ServiceProcess, free_port

TOKEN = "sessions-test-token-7f3a-0123456789abcdef"
SERVICE = "sessions"


def _start(service: Callable[..., ServiceProcess], tmp_path: Path, name: str) -> ServiceProcess:
    return service(
        ROOT / "tests" / "services" / "counting",
        {
            "MICROSERVICE_NAME": SERVICE,
            "QUEUE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
            "COUNT_DIR": str(tmp_path),
            "POLLING_INTERVAL_SECONDS": "0.2",
            "HTTP_PORT": str(free_port()),
            "ADMIN_TOKEN": TOKEN,
            "LOG_CONSOLE_JSON": "true",
            "SERVICE_VERSION": name,
        },
    )


def _login(url: str) -> tuple[str, str]:
    """(session cookie, CSRF token of the dashboard page) of a fresh login on ``url``."""
    with httpx.Client(base_url=url) as c:
        login = c.post("/admin/login", data={"token": TOKEN})
        assert login.status_code == 303, login.text
        page = c.get("/admin/")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        return c.cookies["usvc_admin"], csrf


def _api_with(url: str, cookie: str) -> int:
    with httpx.Client(base_url=url, cookies={"usvc_admin": cookie}) as c:
        return c.get("/admin/api/stats").status_code


def _dashboard_with(url: str, cookie: str) -> int:
    with httpx.Client(base_url=url, cookies={"usvc_admin": cookie}) as c:
        return c.get("/admin/").status_code


def test_a_logout_on_one_process_ends_the_session_on_every_process(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> None:
    one, two = _start(service, tmp_path, "1"), _start(service, tmp_path, "2")
    one.wait_healthy()
    two.wait_healthy()
    copied, csrf = _login(one.url)
    other, _ = _login(two.url)
    for svc in (one, two):  # the cookie is signed with the token: both processes take it
        assert _api_with(svc.url, copied) == 200
        assert _dashboard_with(svc.url, copied) == 200

    with httpx.Client(base_url=one.url, cookies={"usvc_admin": copied}) as c:
        out = c.post("/admin/logout", data={"csrf_token": csrf})
        assert out.status_code == 303

    for svc in (one, two):
        assert _api_with(svc.url, copied) == 401, svc.output()
        assert _dashboard_with(svc.url, copied) == 303  # back to the login page
        with httpx.Client(base_url=svc.url, cookies={"usvc_admin": copied}) as c:
            retry = c.post("/admin/api/jobs/retry", json={}, headers={"X-CSRF-Token": csrf})
            assert retry.status_code == 401
    # Only that session ended: another one, and a new login, still work everywhere.
    fresh, _ = _login(two.url)
    for svc in (one, two):
        assert _api_with(svc.url, other) == 200
        assert _api_with(svc.url, fresh) == 200
