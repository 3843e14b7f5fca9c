"""The HTTP surface under hostile or careless input, over a real socket on a real SQLite
queue: one body limit everywhere, bounded numbers, short 422s, the error tree's statuses,
security headers on every admin answer (errors and 500s too), weak tokens refused, failed
logins limited, the proxy settings, relative redirects and the health probes."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from usvc_core import Status
from usvc_core.bounds import OutOfBoundsError
from usvc_core.errors import (
    ConfigurationError,
    DuplicateJobError,
    JobLockedError,
    JobNotFoundError,
    QueueError,
    QueueUnavailableError,
    UsvcError,
)
from usvc_core.logging import configure_logging
from usvc_http.admin.login_limit import LoginLimiter
from usvc_http.errors import status_for

TOKEN = "hardening-test-token-3c9e1f7a2b8d4e6f0a"
SERVICE = "hard-svc"
HANDLER = """
from pydantic import BaseModel
from usvc_core import action

class In(BaseModel):
    name: str

@action("greet")
async def greet(input: In) -> dict:
    return {"message": f"Hello, {input.name}!"}
"""
SECURITY = ("content-security-policy", "x-frame-options", "x-content-type-options")

Serve = Callable[..., Any]


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def secured(response: httpx.Response) -> bool:
    return all(h in response.headers for h in SECURITY)


# --- one body limit ----------------------------------------------------------------------


async def test_one_body_limit_for_every_route_that_takes_a_body(serve: Serve) -> None:
    _, url = await serve(HTTP_MAX_BODY_BYTES=2000, DEV_MODE=True)
    big = {"payload": {"action": "greet", "name": "x" * 5000}}
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        api = await c.post("/admin/api/jobs", json=big)
        assert api.status_code == 413, api.text
        assert "HTTP_MAX_BODY_BYTES" in api.json()["detail"] and secured(api)
        retry = await c.post("/admin/api/jobs/retry", json={"actions": ["a" * 5000]})
        assert retry.status_code == 413
        login = await c.post("/admin/login", data={"token": "x" * 5000})
        assert login.status_code == 413 and secured(login)
        dev = await c.post("/dev/job", json={"action": "greet", "name": "x" * 5000})
        assert dev.status_code == 413
        # Streamed without a length: counted as it arrives.
        raw = json.dumps(big).encode()

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(raw), 500):
                yield raw[i : i + 500]

        streamed = await c.post(
            "/admin/api/jobs", content=pieces(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        # Under the limit, all is as before.
        ok = await c.post("/admin/api/jobs", json={"payload": {"action": "greet", "name": "A"}})
        assert ok.status_code == 201


async def test_the_admin_api_refuses_anonymous_bodies_before_reading_them(serve: Serve) -> None:
    _, url = await serve(HTTP_MAX_BODY_BYTES=2000)
    async with httpx.AsyncClient(base_url=url) as c:
        # Not JSON at all: an anonymous caller learns nothing of the body's validity.
        r = await c.post("/admin/api/jobs", content=b"{not json", headers={"X-Any": "1"})
        assert r.status_code == 401 and secured(r)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["connection"] == "close"  # the unread body ends the connection


# --- numbers, short 422s, headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('"priority": 100000000000000000000', "priority"),
        ('"priority": 1e309', "priority"),
        ('"priority": -1e20', "priority"),
        ('"delay_seconds": 1e300', "delay_seconds"),
        ('"delay_seconds": -1', "delay_seconds"),
        ('"delay_seconds": NaN', "delay_seconds"),
        ('"delay_seconds": Infinity', "delay_seconds"),
        ('"max_attempts": 0', "max_attempts"),
        ('"max_attempts": 100000', "max_attempts"),
        ('"idempotency_key": ""', "idempotency_key"),
    ],
)
async def test_numbers_out_of_range_are_a_422_naming_the_field(
    serve: Serve, raw: str, field: str
) -> None:
    _, url = await serve()
    body = '{"payload": {"action": "greet", "name": "n"}, ' + raw + "}"
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        r = await c.post(
            "/admin/api/jobs", content=body, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["detail"]] == [field]
    assert secured(r)


async def test_a_422_never_echoes_much_of_the_input(serve: Serve) -> None:
    _, url = await serve()
    huge = "<" + "x" * 100_000 + ">"
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        wrong_type = await c.post("/admin/api/jobs", json={"payload": huge})
        long_key = await c.post(
            "/admin/api/jobs",
            json={"payload": {"action": "greet", "name": "n"}, "idempotency_key": huge},
        )
        bad_status = await c.get("/admin/api/jobs", params={"status": huge[:900]})
        missing = await c.get(f"/admin/api/jobs/{'9' * 900}")
    for r in (wrong_type, long_key, bad_status):
        assert r.status_code == 422, r.text
        assert len(r.text) < 1200, len(r.text)
        assert secured(r)
    assert missing.status_code == 404 and len(missing.text) < 400


async def test_cursors_holding_nan_infinity_or_huge_numbers_are_a_422(serve: Serve) -> None:
    _, url = await serve()

    def cursor(raw: str) -> str:
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        for raw in (
            "[NaN, 1]",
            "[Infinity, 1]",
            "[-Infinity, 1]",
            "[1e999, 1]",
            f"[1.5, {10**30}]",
        ):
            r = await c.get("/admin/api/jobs", params={"cursor": cursor(raw)})
            assert r.status_code == 422, (raw, r.text)
            assert secured(r)


async def test_every_admin_error_and_a_500_carry_the_security_headers(serve: Serve) -> None:
    app, url = await serve()

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals /var/lib/x")

    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        app.queue.stats = broken  # type: ignore[method-assign]
        r = await c.get("/admin/api/stats")
        assert r.status_code == 500 and r.json() == {"detail": "internal error"}
        assert secured(r) and r.headers["cache-control"] == "no-store"
        for path in ("/admin/api/jobs/nope", "/admin/nowhere", "/admin/api/jobs?limit=0"):
            r = await c.get(path)
            assert r.status_code in (404, 422), path
            assert secured(r), path


# --- the error tree in one place ------------------------------------------------------------


class _NewStoreError(QueueError):
    """An error added to the tree later: no route knows it."""


def test_the_error_tree_maps_to_statuses_by_its_most_specific_class() -> None:
    assert status_for(DuplicateJobError("held by job 4", "4"))[0] == 409
    assert status_for(JobNotFoundError("no job 4"))[0] == 404
    assert status_for(JobLockedError("locked"))[0] == 503
    assert status_for(QueueUnavailableError("down"))[0] == 503
    assert status_for(_NewStoreError("new"))[0] == 503
    assert status_for(ConfigurationError("bad"))[0] == 500
    assert status_for(UsvcError("x"))[0] == 500
    assert status_for(OutOfBoundsError("priority", "priority 1e20 is out of bounds"))[0] == 422
    assert status_for(RuntimeError("internals")) == (500, "internal error")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (QueueUnavailableError("the store is down"), 503),
        (_NewStoreError("a new kind of store failure"), 503),
        (JobLockedError("row locked"), 503),
    ],
)
async def test_a_route_answers_the_error_trees_status(
    serve: Serve, error: Exception, status: int
) -> None:
    app, url = await serve(DEV_MODE=True)

    async def failing(*_: Any, **__: Any) -> Any:
        raise error

    app.queue.get = failing  # type: ignore[method-assign]
    app.queue.stats = failing  # type: ignore[method-assign]
    app.queue.enqueue = failing  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        for r in (
            await c.get("/admin/api/jobs/1"),
            await c.get("/admin/api/stats"),
            await c.post("/admin/api/jobs", json={"payload": {"action": "greet", "name": "n"}}),
            await c.post("/dev/job", json={"action": "greet", "name": "n"}),
        ):
            assert r.status_code == status, r.text
            assert str(error) in r.json()["detail"]
            assert r.headers["retry-after"] == "1"


async def test_a_session_the_store_cannot_check_is_refused_with_a_503(serve: Serve) -> None:
    app, url = await serve()

    async def down(*_: Any, **__: Any) -> Any:
        raise QueueUnavailableError("the store is down")

    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.post("/admin/login", data={"token": TOKEN})).status_code == 303
        app.queue.session_revoked = down  # type: ignore[method-assign]
        r = await c.get("/admin/api/stats")
        assert r.status_code == 503 and "the store is down" in r.json()["detail"]
        assert r.headers["retry-after"] == "1" and secured(r)
        # A bearer token needs no store: it still works.
        assert (await c.get("/admin/api/stats", headers=bearer())).status_code == 200


async def test_a_duplicate_key_names_the_holding_job_once(serve: Serve) -> None:
    _, url = await serve()
    body = {
        "payload": {"action": "greet", "name": "n"},
        "delay_seconds": 3600,
        "idempotency_key": "order-7",
    }
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        first = (await c.post("/admin/api/jobs", json=body)).json()
        again = await c.post("/admin/api/jobs", json=body)
    assert again.status_code == 409
    answer = again.json()
    assert answer["existing_job_id"] == first["id"]
    assert answer["detail"].count(first["id"]) == 1, answer["detail"]


# --- small ones ------------------------------------------------------------------------------


async def test_the_status_filter_takes_any_case(serve: Serve) -> None:
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url, headers=bearer()) as c:
        job = (
            await c.post(
                "/admin/api/jobs",
                json={"payload": {"action": "greet", "name": "L"}, "delay_seconds": 3600},
            )
        ).json()
        for name in ("ready", "READY", "Ready", "rEaDy"):
            page = (await c.get("/admin/api/jobs", params={"status": name})).json()
            assert [j["id"] for j in page["jobs"]] == [job["id"]], name
        unknown = await c.get("/admin/api/jobs", params={"status": "done"})
        assert unknown.status_code == 422 and "Ready" in unknown.json()["detail"]


async def test_trailing_slash_redirects_are_relative(serve: Serve) -> None:
    _, url = await serve()
    async with httpx.AsyncClient(base_url=url) as c:
        r = await c.get("/admin", headers={"Host": "evil.example"})
        assert r.status_code == 307 and r.headers["location"] == "/admin/"
        r = await c.get("/admin/api/stats/?minutes=5", headers={"Host": "evil.example", **bearer()})
        assert r.status_code == 307 and r.headers["location"] == "/admin/api/stats?minutes=5"
        assert (await c.get("//evil.example/")).status_code == 404
        assert (await c.get("/nowhere/")).status_code == 404


# --- tokens and logins -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["a", "   ", "short-token-1234", "a" * 64, "abababababababababababababababab", " " + TOKEN],
)
async def test_weak_tokens_are_refused_at_startup(serve: Serve, token: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await serve(ADMIN_TOKEN=token)
    message = str(caught.value)
    assert "ADMIN_TOKEN" in message
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message
    if len(token.strip()) > 3:
        assert token.strip() not in message  # the secret is not repeated


async def test_failed_logins_are_limited_per_client_address(serve: Serve) -> None:
    _, url = await serve(ADMIN_LOGIN_ATTEMPTS_PER_MINUTE=3, HTTP_TRUSTED_PROXIES="127.0.0.1")
    async with httpx.AsyncClient(base_url=url) as c:
        for _ in range(3):
            assert (await c.post("/admin/login", data={"token": "guess"})).status_code == 401
        limited = await c.post("/admin/login", data={"token": TOKEN})  # even the right one
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "too many failed sign-ins" in limited.text and secured(limited)
        # Another client (as a trusted proxy reports it) is not affected.
        other = await c.post(
            "/admin/login", data={"token": TOKEN}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert other.status_code == 303


def test_the_login_limiter_forgets_and_stays_bounded() -> None:
    now = [0.0]
    limiter = LoginLimiter(2, window_seconds=60, max_clients=100, clock=lambda: now[0])
    limiter.failed("a")
    assert limiter.retry_after("a") is None
    limiter.failed("a")
    assert limiter.retry_after("a") == 60
    now[0] = 30.5
    assert limiter.retry_after("a") == 30
    now[0] = 60.0
    assert limiter.retry_after("a") is None
    for i in range(10_000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    limiter.failed("b")
    limiter.succeeded("b")
    assert limiter.retry_after("b") is None


# --- behind a proxy --------------------------------------------------------------------------


async def _login(c: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await c.post("/admin/login", data={"token": TOKEN}, headers=headers)


async def test_the_cookie_is_secure_when_the_public_scheme_is_https(serve: Serve) -> None:
    _, plain = await serve()
    _, proxied = await serve(HTTP_TRUSTED_PROXIES="127.0.0.1")
    _, public = await serve(ADMIN_PUBLIC_ORIGIN="https://ops.example.com")
    async with httpx.AsyncClient(base_url=plain) as c:
        r = await _login(c, **{"X-Forwarded-Proto": "https"})  # untrusted: ignored
        assert "secure" not in r.headers["set-cookie"].lower()
    async with httpx.AsyncClient(base_url=proxied) as c:
        r = await _login(c, **{"X-Forwarded-Proto": "https"})
        assert "; secure" in r.headers["set-cookie"].lower()
    async with httpx.AsyncClient(base_url=public) as c:
        r = await _login(c, Origin="https://ops.example.com")
        assert r.status_code == 303 and "; secure" in r.headers["set-cookie"].lower()
        refused = await _login(c, Origin=public)  # the internal address is not the origin
        assert refused.status_code == 403


async def test_the_origin_check_uses_the_public_origin(serve: Serve) -> None:
    _, url = await serve(ADMIN_PUBLIC_ORIGIN="https://ops.example.com/")
    async with httpx.AsyncClient(base_url=url) as c:
        login = await _login(c, Origin="https://ops.example.com")
        # Secure: httpx keeps it for https; the test plays the TLS proxy and sends it on.
        session = login.headers["set-cookie"].split(";")[0]
        page = await c.get("/admin/", headers={"Cookie": session})
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        body = {"payload": {"action": "greet", "name": "P"}}
        sent = {"X-CSRF-Token": csrf, "Cookie": session}
        ok = await c.post(
            "/admin/api/jobs", json=body, headers={**sent, "Origin": "https://ops.example.com"}
        )
        assert ok.status_code == 201, ok.text
        inner = await c.post("/admin/api/jobs", json=body, headers={**sent, "Origin": url})
        assert inner.status_code == 403


@pytest.mark.parametrize("origin", ["ops.example.com", "https://ops.example.com/admin", "ftp://x"])
async def test_a_public_origin_that_is_not_one_is_refused(serve: Serve, origin: str) -> None:
    with pytest.raises(ConfigurationError, match="ADMIN_PUBLIC_ORIGIN"):
        await serve(ADMIN_PUBLIC_ORIGIN=origin)


async def test_trusted_proxies_that_are_not_addresses_are_refused(serve: Serve) -> None:
    with pytest.raises(ConfigurationError, match="HTTP_TRUSTED_PROXIES"):
        await serve(HTTP_TRUSTED_PROXIES="127.0.0.1, proxy.internal")


# --- health probes and logs ------------------------------------------------------------------


async def test_liveness_and_readiness_probes(serve: Serve) -> None:
    app, url = await serve()
    async with httpx.AsyncClient(base_url=url) as c:
        assert (await c.get("/health/live")).status_code == 200
        assert (await c.get("/health/ready")).status_code == 200
        app.health.update("payment_api", Status.RED, {"circuit": "open"})
        assert (await c.get("/health")).status_code == 503
        ready = await c.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "RED"
        live = await c.get("/health/live")
        assert live.status_code == 200 and live.json()["worker_running"] is True
        app.health.update("payment_api", Status.YELLOW)
        assert (await c.get("/health/ready")).status_code == 200
        app.worker.request_stop()  # the worker loop ends; the HTTP server still answers
        async with asyncio.timeout(10):
            await asyncio.gather(app._worker_task, return_exceptions=True)
        stopped = await c.get("/health/live")
        assert stopped.status_code == 503 and stopped.json()["worker_running"] is False


async def test_httpx_request_lines_are_quiet_by_default(serve: Serve) -> None:
    _, url = await serve()
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:
        async with httpx.AsyncClient(base_url=url) as c:
            await c.get("/health")
        logging.getLogger("httpx").warning("a warning still shows")
    finally:
        configure_logging(json=True)
    text = out.getvalue()
    assert "HTTP Request" not in text
    assert "a warning still shows" in text
