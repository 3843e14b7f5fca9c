"""Hostile bodies against a real service process: a chunked 200 MB body (made piece by
piece, never held whole) to every route that takes a body, with and without the admin
token, is refused (401 before anything is read, 413 while it streams in), and the
process's peak resident memory (``VmHWM``) grows by under 32 MB through all of them, sent
one after another and then all at once.

The service may close the connection while the client still sends (that is the point:
it stops reading); the client then reads whatever answer reached it, and a connection
reset before any answer counts as "refused without an answer" only where noted.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, ServiceProcess, free_port

TOKEN = "hostile-bodies-test-token-5d8f2a9c1e7b4"
BODY_BYTES = 200 * 1024 * 1024
PIECE = 64 * 1024
MAX_GROWTH = 32 * 1024 * 1024

pytestmark = pytest.mark.slow


def peak_rss(pid: int) -> int:
    """The process's high-water resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _status(head: bytes) -> int | None:
    if not head.startswith(b"HTTP/1.1 "):
        return None
    return int(head.split(b" ", 2)[1])


def post_chunked(
    port: int, path: str, headers: dict[str, str], total: int = BODY_BYTES
) -> tuple[int | None, int]:
    """POST ``total`` bytes as a chunked body, one piece at a time, stopping as soon as an
    answer arrives; returns (status or None when the connection ended without one, bytes
    sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Transfer-Encoding: chunked"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    framed = f"{PIECE:x}\r\n".encode() + b"x" * PIECE + b"\r\n"
    sent = 0
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        while sent < total:
            sock.sendall(framed)
            sent += PIECE
            if select.select([sock], [], [], 0)[0]:
                break  # an answer (or the close) came while we were sending
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the service stopped reading and closed: read what it answered
    answer = b""
    try:
        while b"\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    return _status(answer), sent


def post_declared(port: int, path: str, headers: dict[str, str]) -> int | None:
    """A request that declares a 200 MB Content-Length and sends none of it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        head += [f"Content-Length: {BODY_BYTES}", *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        return _status(sock.recv(65536))


@pytest.fixture
def svc(tmp_path: Path, service: Callable[..., ServiceProcess]) -> ServiceProcess:
    proc = service(
        ROOT / "tests" / "services" / "dashboard",
        {
            "MICROSERVICE_NAME": "hostile",
            "QUEUE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
            "DEV_MODE": "true",
            "DEV_JOB_WAIT_SECONDS": "5",
            "HTTP_PORT": str(free_port()),
            "ADMIN_TOKEN": TOKEN,
            "FLAKY_MARKER": str(tmp_path / "absent"),
        },
    )
    proc.wait_healthy()
    return proc


def test_oversized_bodies_are_refused_as_they_stream_in(svc: ServiceProcess) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    # Warm up every route first, so the baseline holds what a served request costs.
    with httpx.Client(base_url=svc.url, timeout=30) as c:
        job = c.post("/dev/job", json={"action": "greet", "name": "warm"})
        assert job.status_code == 200, job.text
        assert c.post("/admin/login", data={"token": TOKEN}).status_code == 303
        c.post("/admin/logout")
        c.cookies.clear()
        made = c.post("/admin/api/jobs", json={"payload": {"action": "greet", "name": "w"}})
        assert made.status_code == 401
        made = c.post(
            "/admin/api/jobs", json={"payload": {"action": "greet", "name": "w"}}, headers=bearer
        )
        assert made.status_code == 201, made.text
        assert c.post("/admin/api/jobs/retry", json={}, headers=bearer).status_code == 200
    before = peak_rss(svc.proc.pid)

    # (path, headers, expected): every route that takes a body, anonymous and with a token.
    cases: list[tuple[str, dict[str, str], int]] = [
        ("/dev/job", {}, 413),
        ("/admin/login", {"Content-Type": "application/x-www-form-urlencoded"}, 413),
        ("/admin/logout", {"Content-Type": "application/x-www-form-urlencoded"}, 413),
        ("/admin/api/jobs", {"Content-Type": "application/json"}, 401),
        ("/admin/api/jobs/retry", {"Content-Type": "application/json"}, 401),
        ("/admin/api/jobs/1/retry", {}, 401),
        ("/admin/api/jobs/1/cancel", {}, 401),
        ("/admin/api/jobs", {"Content-Type": "application/json", **bearer}, 413),
        ("/admin/api/jobs/retry", {"Content-Type": "application/json", **bearer}, 413),
    ]
    for path, headers, expected in cases:
        status, sent = post_chunked(svc.port, path, headers)
        assert status == expected, (path, headers, status, svc.output()[-2000:])
        # Refused early: it answered long before the 200 MB were through.
        assert sent < BODY_BYTES, (path, sent)
        assert post_declared(svc.port, path, headers) == expected, path

    # Routes that read no body answer without it; the rest is read and dropped, not kept.
    for path in ("/admin/api/jobs/1/retry", "/admin/api/jobs/1/cancel"):
        status, _ = post_chunked(svc.port, path, bearer)
        assert status is None or status < 500, (path, status)

    # All of them at once: the memory bound holds per connection, not only one at a time.
    with ThreadPoolExecutor(len(cases)) as pool:
        answers = list(pool.map(lambda case: post_chunked(svc.port, case[0], case[1]), cases))
    assert [status for status, _ in answers] == [expected for _, _, expected in cases]

    growth = peak_rss(svc.proc.pid) - before
    print(f"VmHWM growth over {2 * len(cases)} bodies of 200 MB: {growth / 1024 / 1024:.1f} MB")
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / 1024 / 1024:.1f} MB"
    assert httpx.get(f"{svc.url}/health", timeout=10).status_code == 200
