"""The REST client's transport builds its pools on first use, one per scheme."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from usvc_http.rest.transport import LazyTransport


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)  # answers plain HTTP at once, even to a TLS hello
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


async def test_an_http_client_builds_only_the_plain_pool_and_only_when_used() -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = LazyTransport(httpx.Limits(max_connections=2))
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            assert transport._pools == {}  # nothing built before the first request
            first = await client.get(f"http://127.0.0.1:{port}/a")
            second = await client.get(f"http://127.0.0.1:{port}/b")
            assert (first.text, second.text) == ("ok", "ok")
            assert list(transport._pools) == ["http"]  # no TLS pool, no certificate bundle
    finally:
        server.close()
        await server.wait_closed()
    assert transport._pools == {}  # closed with the client


async def test_an_https_request_goes_to_a_verifying_pool() -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = LazyTransport(httpx.Limits(max_connections=2))
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            # The plain server cannot complete a TLS handshake: the request must fail
            # rather than fall back to plain HTTP.
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://127.0.0.1:{port}/")
            assert list(transport._pools) == ["https"]
    finally:
        server.close()
        await server.wait_closed()
