"""OracleQueue on the real python-oracledb driver, against endpoints that are not Oracle:
a closed port, a server that hangs up, a server that never answers, a TNS alias without a
tnsnames.ora. No Oracle server is needed; the failures are the driver's own."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from usvc_core.errors import ConfigurationError, QueueUnavailableError
from usvc_oracle import OracleQueue, OracleSettings


def _queue(dsn: str, **options: Any) -> OracleQueue:
    values: dict[str, Any] = {
        "ORACLE_USER": "app",
        "ORACLE_PASSWORD": "secret",
        "ORACLE_DSN": dsn,
        "ORACLE_RETRIES": 1,
        "ORACLE_RETRY_BACKOFF_SECONDS": 0.01,
        "ORACLE_POOL_WAIT_SECONDS": 0.5,
        "ORACLE_CONNECT_TIMEOUT_SECONDS": 0.5,
        "ORACLE_POOL_SIZE": 1,
        **options,
    }
    return OracleQueue(OracleSettings(**values))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def fake_listener(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    """A TCP server that either hangs up at once or never says a word."""
    mode = request.param
    idle: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if mode == "hang up":
            writer.close()
        else:
            idle.append(writer)  # keep the socket open and silent

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in idle:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_closed_port_is_unavailable_not_fatal() -> None:
    """Nothing listening: open() fails as QueueUnavailableError after bounded retries,
    naming the DSN (the worker's outage handling can wait for the database)."""
    dsn = f"127.0.0.1:{_closed_port()}/FREEPDB1"
    queue = _queue(dsn)
    async with asyncio.timeout(30):
        with pytest.raises(QueueUnavailableError, match=r"failed 2 time\(s\).*DPY-6005") as e:
            await queue.open()
    assert dsn in str(e.value)


@pytest.mark.parametrize("fake_listener", ["hang up", "silent"], indirect=True)
async def test_a_server_that_is_not_oracle(fake_listener: int) -> None:
    """A peer that hangs up or never answers the handshake gives QueueUnavailableError
    within the configured bounds, never a hang."""
    queue = _queue(f"127.0.0.1:{fake_listener}/FREEPDB1")
    async with asyncio.timeout(30):
        with pytest.raises(QueueUnavailableError, match="cannot reach Oracle"):
            await queue.open()


async def test_tns_alias_without_tnsnames_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec's default ORACLE_DSN=XEPDB1 is an alias: without tnsnames.ora, startup fails
    with a message saying to use host:port/service_name or set TNS_ADMIN."""
    monkeypatch.delenv("TNS_ADMIN", raising=False)
    monkeypatch.delenv("ORACLE_HOME", raising=False)
    with pytest.raises(ConfigurationError, match="use host:port/service_name, or set TNS_ADMIN"):
        await _queue("XEPDB1").open()


async def test_operations_after_a_failed_open_are_unavailable() -> None:
    """A queue whose open() failed is closed; later calls report an unavailable store."""
    queue = _queue(f"127.0.0.1:{_closed_port()}/FREEPDB1")
    with pytest.raises(QueueUnavailableError):
        await queue.open()
    with pytest.raises(QueueUnavailableError, match="not open"):
        await queue.claim("svc", "w", 1, 30)
    with pytest.raises(QueueUnavailableError):
        await queue.ping()
