"""BodyLimit at the ASGI level: what it trusts the server with and what it counts."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send
from usvc_http.body_limit import BodyLimit


def _scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/dev/job", "headers": headers}


async def _run(
    headers: list[tuple[bytes, bytes]], pieces: list[bytes]
) -> tuple[list[Message], list[Any]]:
    """Call a BodyLimit(max_bytes=10) around an app that reads the whole body and echoes it."""
    sent: list[Message] = []
    seen: list[Any] = []
    incoming: list[Message] = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive_: Receive, send_: Send) -> None:
        seen.append(receive_)
        body = b""
        while True:
            message = await receive_()
            if message["type"] != "http.request":
                return
            body += message["body"]
            if not message["more_body"]:
                break
        await send_({"type": "http.response.start", "status": 200, "headers": []})
        await send_({"type": "http.response.body", "body": body})

    await BodyLimit(app, max_bytes=10)(_scope(headers), receive, send)
    seen.append(receive)
    return sent, seen


async def test_a_declared_length_under_the_limit_passes_untouched() -> None:
    """The server reads exactly the declared bytes: the app gets the server's receive."""
    sent, (given, original) = await _run([(b"content-length", b"5")], [b"hello"])
    assert given is original
    assert [m.get("status") for m in sent] == [200, None] and sent[1]["body"] == b"hello"


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    sent, seen = await _run([(b"content-length", b"11")], [b"x" * 11])
    assert sent[0]["status"] == 413 and len(seen) == 1  # the app never ran


async def test_a_transfer_encoding_overrides_the_declared_length_and_is_counted() -> None:
    """Content-Length 5 with Transfer-Encoding: chunked is framed by the chunks (RFC 9112):
    the body is counted as it streams, and refused once past the limit."""
    headers = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    sent, _ = await _run(headers, [b"x" * 6, b"x" * 6])
    assert sent[0]["status"] == 413
    assert all(m.get("status") != 200 for m in sent)
