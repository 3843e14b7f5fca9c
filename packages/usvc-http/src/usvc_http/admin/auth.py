"""Who may use the admin tree: a bearer token (scripts) or a signed session cookie (the
dashboard), with a CSRF token on every state-changing request made with the cookie.

The session cookie holds no secret: ``<expiry>.<nonce>.<signature>``, signed with a key
derived from ADMIN_TOKEN, so every worker process behind a load balancer accepts it, and
changing the token ends every session. The CSRF token is derived from the session (a
synchronizer token nobody can compute without the key); the page carries it and the
dashboard's script sends it back in ``X-CSRF-Token``. Bearer requests need no CSRF token:
a browser never attaches an Authorization header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from fastapi import Request

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "AdminAuth",
    "Caller",
    "SessionRevocations",
]

SESSION_COOKIE = "usvc_admin"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: by bearer token, or by session (with its CSRF token)."""

    via: str  # "bearer" or "session"
    csrf_token: str | None = None


class SessionRevocations(Protocol):
    """Where logouts are kept for every process of the service (``QueueAdmin`` has it)."""

    async def revoke_session(self, session_id: str, until: datetime) -> None: ...

    async def session_revoked(self, session_id: str) -> bool: ...


class AdminAuth:
    """Checks requests against one ADMIN_TOKEN; every comparison is constant-time.

    With ``revocations`` (the queue store), a logout ends the session on every process
    sharing the store: :meth:`end_session` records it there, :meth:`authenticate`
    refuses it from then on."""

    def __init__(
        self,
        token: str,
        public_origin: str = "",
        *,
        revocations: SessionRevocations | None = None,
    ) -> None:
        self._token = token.encode()
        self._public_origin = public_origin.lower().rstrip("/")
        self._key = hmac.new(self._token, b"usvc-admin-session-v1", hashlib.sha256).digest()
        self._revocations = revocations

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    @staticmethod
    def csrf_matches(sent: str, expected: str) -> bool:
        return hmac.compare_digest(sent.encode(), expected.encode())

    def _sign(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        body = f"{expires}.{secrets.token_hex(16)}"
        return f"{body}.{self._sign(body)}"

    def csrf_for(self, session: str) -> str:
        nonce = session.split(".")[1]
        return self._sign(f"csrf:{nonce}")

    def session_valid(self, session: str, now: float | None = None) -> bool:
        parts = session.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(body), parts[2]):
            return False
        return int(parts[0]) > (now if now is not None else time.time())

    def caller(self, request: Request) -> Caller | None:
        """Who sent ``request``, or None when it is not authenticated."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return Caller("bearer") if self.token_matches(value.strip()) else None
        session = request.cookies.get(SESSION_COOKIE)
        if session and self.session_valid(session):
            return Caller("session", self.csrf_for(session))
        return None

    # --- store: logout ends the session everywhere (issue 19 item 4) ----------------------

    async def authenticate(self, request: Request) -> Caller | None:
        """:meth:`caller`, refusing a session that a logout revoked (on any process)."""
        caller = self.caller(request)
        if caller is None or caller.via != "session" or self._revocations is None:
            return caller
        session = request.cookies.get(SESSION_COOKIE, "")
        if await self._revocations.session_revoked(session.split(".")[1]):
            return None
        return caller

    async def end_session(self, request: Request) -> None:
        """Revoke the request's (valid) session until it would have expired anyway."""
        session = request.cookies.get(SESSION_COOKIE)
        if self._revocations is None or not session or not self.session_valid(session):
            return
        expires, nonce, _ = session.split(".")
        await self._revocations.revoke_session(nonce, datetime.fromtimestamp(int(expires), UTC))

    # --- end store -----------------------------------------------------------------------

    def csrf_ok(self, request: Request, caller: Caller) -> bool:
        """A state-changing request made with the session cookie carries the page's CSRF
        token, and no foreign Origin."""
        if caller.via == "bearer" or request.method in _SAFE_METHODS:
            return True
        if self.foreign_origin(request):
            return False
        sent = request.headers.get(CSRF_HEADER, "")
        return caller.csrf_token is not None and self.csrf_matches(sent, caller.csrf_token)

    def own_origin(self, request: Request) -> str:
        """The dashboard's origin as the browser sees it: ADMIN_PUBLIC_ORIGIN, else the
        request's scheme (a trusted proxy's X-Forwarded-Proto) and Host."""
        if self._public_origin:
            return self._public_origin
        return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()

    def foreign_origin(self, request: Request) -> bool:
        """Whether the browser says the request comes from a page of another origin."""
        origin = request.headers.get("origin")
        return origin is not None and origin.lower() != self.own_origin(request)

    def secure_cookie(self, request: Request) -> bool:
        """Whether the session cookie is ``Secure``: the browser reaches us over https."""
        return self.own_origin(request).startswith("https://")
