"""The admin API's door: a request to ``/admin/api`` is authenticated (and its CSRF token
checked) from its headers alone, before anything reads its body, so an anonymous client
cannot make the service buffer or parse anything."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from usvc_core.errors import QueueError

from usvc_http.admin.auth import AdminAuth
from usvc_http.body_limit import send_refusal
from usvc_http.errors import status_for

__all__ = ["API_PREFIX", "UNAUTHENTICATED", "AdminApiGate"]

API_PREFIX = "/admin/api"
UNAUTHENTICATED = "send Authorization: Bearer <ADMIN_TOKEN>, or log in at /admin/login"
_CHALLENGE = (b"www-authenticate", b'Bearer realm="usvc admin"')
_RETRY_SOON = (b"retry-after", b"1")


class AdminApiGate:
    """401 without a valid bearer token or session; 403 for a session request without
    its CSRF token (or from a foreign Origin)."""

    def __init__(self, app: ASGIApp, auth: AdminAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            request = Request(scope)
            try:
                caller = await self.auth.authenticate(request)  # a logged-out session: None
            except QueueError as exc:  # the store cannot say: refused, never let through
                status, message = status_for(exc)
                await send_refusal(send, status, message, [_RETRY_SOON], receive)
                return
            if caller is None:
                await send_refusal(send, 401, UNAUTHENTICATED, [_CHALLENGE], receive)
                return
            if not self.auth.csrf_ok(request, caller):
                await send_refusal(
                    send, 403, "missing or wrong X-CSRF-Token (or a foreign Origin)", None, receive
                )
                return
        await self.app(scope, receive, send)
