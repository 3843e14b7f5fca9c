"""The admin API and the dashboard's pages over a real socket, on a real SQLite queue:
authentication, CSRF, every endpoint, headers, OpenAPI, and the switch that turns it off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

TOKEN = "s3cret-admin-token-1234-0a9b8c7d6e5f4g3h"
SERVICE = "admin-svc"

HANDLER = """
from pydantic import BaseModel
from usvc_core import action

class In(BaseModel):
    name: str

@action("greet")
async def greet(input: In) -> dict:
    return {"message": f"Hello, {input.name}!"}
"""

Serve = Callable[..., Any]


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_status(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            job: dict[str, Any] = (await client.get(f"/admin/api/jobs/{job_id}")).json()
            if job["status"] == status:
                return job
            await asyncio.sleep(0.05)


async def test_without_a_token_the_admin_tree_does_not_exist(serve: Serve) -> None:
    _, url = await serve(ADMIN_TOKEN="")
    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/admin/api/stats", headers=bearer())).status_code == 404
        assert (await c.get("/admin/")).status_code == 404
        spec = (await c.get("/openapi.json")).json()
        assert not any(p.startswith("/admin") for p in spec["paths"])


async def test_bearer_auth_is_required_and_checked(serve: Serve) -> None:
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url) as c:
        none = await c.get("/admin/api/stats")
        assert none.status_code == 401
        assert none.headers["www-authenticate"].startswith("Bearer")
        wrong = await c.get("/admin/api/stats", headers=bearer("nope"))
        assert wrong.status_code == 401
        ok = await c.get("/admin/api/stats", headers=bearer())
        assert ok.status_code == 200
        assert ok.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in ok.headers["content-security-policy"]


async def test_every_endpoint_with_a_bearer_token(serve: Serve) -> None:
    """Enqueue, list with filters and pages, show, retry one and by filter, cancel, stats."""
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        good = await c.post("/admin/api/jobs", json={"payload": {"action": "greet", "name": "A"}})
        assert good.status_code == 201, good.text
        done = await wait_status(c, good.json()["id"], "Completed")
        assert done["results"] == {"message": "Hello, A!"}
        bad = (await c.post("/admin/api/jobs", json={"payload": {"action": "greet"}})).json()
        failed = await wait_status(c, bad["id"], "Failed")
        assert failed["error_code"] == "VALIDATION_ERROR"
        later = await c.post(
            "/admin/api/jobs",
            json={"payload": {"action": "greet", "name": "L"}, "delay_seconds": 3600},
        )
        later_id = later.json()["id"]
        no_action = await c.post("/admin/api/jobs", json={"payload": {"name": "x"}})
        assert no_action.status_code == 422 and "action" in no_action.json()["detail"]

        page = (await c.get("/admin/api/jobs", params={"status": "Failed"})).json()
        assert [j["id"] for j in page["jobs"]] == [bad["id"]]
        assert page["jobs"][0]["error_code"] == "VALIDATION_ERROR"
        first = (await c.get("/admin/api/jobs", params={"limit": 2})).json()
        rest = (
            await c.get("/admin/api/jobs", params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        ids = [j["id"] for j in first["jobs"] + rest["jobs"]]
        assert ids == [later_id, bad["id"], good.json()["id"]]
        assert (await c.get("/admin/api/jobs", params={"cursor": "junk"})).status_code == 422
        naive = await c.get("/admin/api/jobs", params={"created_after": "2026-01-01T00:00:00"})
        assert naive.status_code == 422

        assert (await c.get("/admin/api/jobs/999999")).status_code == 404
        not_failed = await c.post(f"/admin/api/jobs/{later_id}/retry")
        assert not_failed.status_code == 409

        stats = (await c.get("/admin/api/stats")).json()
        assert stats["service"] == SERVICE
        assert stats["counts"]["Completed"] == 1 and stats["counts"]["Failed"] == 1
        assert stats["counts"]["Ready"] == 1
        assert len(stats["per_minute"]) == 60
        assert sum(m["completed"] for m in stats["per_minute"]) == 1
        [greet] = stats["actions"]
        assert greet["action"] == "greet" and greet["counts"]["Failed"] == 1

        cancelled = (await c.post(f"/admin/api/jobs/{later_id}/cancel")).json()
        assert cancelled == {"id": later_id, "status": "Failed", "outcome": "cancelled"}
        again = (await c.post(f"/admin/api/jobs/{later_id}/cancel")).json()
        assert again["outcome"] == "already_finished"

        retried = (
            await c.post("/admin/api/jobs/retry", json={"error_codes": ["CANCELLED"]})
        ).json()
        assert retried == {"retried": 1}
        back = await wait_status(c, later_id, "Completed")  # due now: the worker ran it
        assert back["attempts"] == 1 and back["error_code"] is None
        assert back["results"] == {"message": "Hello, L!"}
        assert (await c.post(f"/admin/api/jobs/{bad['id']}/retry")).json() == {"retried": 1}


async def test_the_session_cookie_and_csrf(serve: Serve) -> None:
    """Login sets an HttpOnly SameSite=Strict cookie; GETs work with it; a POST with the
    cookie but without the page's CSRF token (or from a foreign Origin) is refused."""
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url) as c:
        wrong = await c.post("/admin/login", data={"token": "guess"})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        assert "usvc_admin" not in wrong.headers.get("set-cookie", "")
        login = await c.post("/admin/login", data={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/admin/"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
        assert TOKEN.lower() not in cookie
        page = await c.get("/admin/")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        assert (await c.get("/admin/api/stats")).status_code == 200
        body = {"payload": {"action": "greet", "name": "C"}}
        refused = await c.post("/admin/api/jobs", json=body)
        assert refused.status_code == 403
        forged = await c.post("/admin/api/jobs", json=body, headers={"X-CSRF-Token": "0" * 64})
        assert forged.status_code == 403
        foreign = await c.post(
            "/admin/api/jobs",
            json=body,
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        allowed = await c.post("/admin/api/jobs", json=body, headers={"X-CSRF-Token": csrf})
        assert allowed.status_code == 201
        logout_no_csrf = await c.post("/admin/logout")
        assert logout_no_csrf.status_code == 403
        out = await c.post("/admin/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
        c.cookies.clear()
        assert (await c.get("/admin/")).status_code == 303


async def test_a_tampered_or_expired_session_is_refused(serve: Serve) -> None:
    from usvc_http.admin.auth import SESSION_SECONDS, AdminAuth

    _, url = await serve()
    auth = AdminAuth(TOKEN)
    session = auth.new_session()
    expires, nonce, sig = session.split(".")
    tampered = f"{int(expires) + 99999}.{nonce}.{sig}"
    old = auth.new_session(now=0.0)
    other = AdminAuth("another token").new_session()
    assert auth.session_valid(session) and not auth.session_valid(old)
    assert not auth.session_valid(session, now=int(expires) + 1)
    assert auth.session_valid(session, now=int(expires) - SESSION_SECONDS + 1)
    async with httpx.AsyncClient(base_url=url) as c:
        for bad in (tampered, old, other, "garbage"):
            c.cookies.set("usvc_admin", bad)
            assert (await c.get("/admin/api/stats")).status_code == 401, bad
        c.cookies.set("usvc_admin", session)
        assert (await c.get("/admin/api/stats")).status_code == 200


async def test_pages_and_static_files_carry_a_strict_policy(serve: Serve) -> None:
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url) as c:
        login = await c.get("/admin/login")
        csp = login.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert login.headers["x-frame-options"] == "DENY"
        assert "<script" not in login.text and "style=" not in login.text
        js = await c.get("/admin/static/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in js.text
        assert (await c.get("/admin/static/../settings.py")).status_code == 404
        assert (await c.get("/admin/static/nope.js")).status_code == 404
        health = await c.get("/health")
        assert "content-security-policy" not in health.headers  # only the /admin tree


async def test_openapi_documents_the_admin_api(serve: Serve) -> None:
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url) as c:
        spec = (await c.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/admin/api/stats",
        "/admin/api/jobs",
        "/admin/api/jobs/{job_id}",
        "/admin/api/jobs/retry",
        "/admin/api/jobs/{job_id}/retry",
        "/admin/api/jobs/{job_id}/cancel",
    ):
        assert path in paths, path
    assert paths["/admin/api/jobs"]["post"]["tags"] == ["admin"]
    assert "JobOut" in spec["components"]["schemas"]
    assert not any(p.startswith("/admin/login") for p in paths)


async def test_the_token_is_never_logged(
    serve: Serve, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url) as c:
        await c.get("/admin/api/stats", headers=bearer())
        await c.get("/admin/api/stats", headers=bearer(TOKEN + "x"))
        await c.post("/admin/login", data={"token": TOKEN})
        await c.post("/admin/login", data={"token": "wrong-" + TOKEN})
    out = capsys.readouterr()
    assert TOKEN not in caplog.text + out.out + out.err
