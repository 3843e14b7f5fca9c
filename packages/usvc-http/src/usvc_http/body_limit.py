"""One request-body limit for every route, enforced while the body streams in.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is refused before a
byte is read (one under it passes untouched: the server reads no more than it declares),
and a chunked body is counted as its pieces arrive, so the process never
holds more than the limit plus one piece of a body it refuses. The 413 says
``Connection: close``. Closing a socket with unread data resets it, and a client still
sending (most send the whole body before they read) would lose the answer: so the rest
of the body is read and dropped for a bounded while (bytes and seconds) before the close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "send_refusal"]

#: How much of a refused body is read and dropped before the connection closes.
DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 2.0


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a body, up to DRAIN_BYTES / DRAIN_SECONDS."""
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while dropped <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                dropped += len(message.get("body", b""))


async def send_refusal(
    send: Send,
    status: int,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    receive: Receive | None = None,
) -> None:
    """A JSON answer that ends the connection; with ``receive``, the body still coming is
    drained (bounded) first, so the client gets to read the answer."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    if receive is None:
        await send({"type": "http.response.body", "body": body})
        return
    # The answer goes out now (a client that reads early stops sending); the connection
    # closes when the drain is over.
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await _drain(receive)
    await send({"type": "http.response.body", "body": b""})


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length the server frames the body by; None when there is none, it is
    not a number, or a Transfer-Encoding overrides it (RFC 9112 6.3: chunked wins)."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length" and declared is None:
            if not value.isdigit():
                return None
            declared = int(value)
        elif name == b"transfer-encoding":
            return None
    return declared


class BodyLimit:
    """Refuses with 413 any request whose body is larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"the request body is larger than {max_bytes} bytes (HTTP_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await send_refusal(send, 413, self.detail, receive=receive)
                return
            # The server reads exactly the declared bytes (h11 and httptools frame the
            # body by it): nothing to count.
            await self.app(scope, receive, send)
            return
        received = 0
        refused = False
        started = False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started and message.get("more_body", False):
                        await send_refusal(send, 413, self.detail, receive=receive)
                    elif not started:
                        await send_refusal(send, 413, self.detail)
                    # The app sees a client that went away; what it answers is dropped.
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not refused:
                raise
