"""Trailing-slash redirects that point at a path, never at the request's ``Host``.

Starlette's own redirect is absolute, built from the Host header the client sent: behind
a proxy it names the internal address, and a forged Host is echoed back. This one answers
``Location: /admin/`` (relative), and only for a path a route serves.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

__all__ = ["redirect_slashes_relatively"]


def redirect_slashes_relatively(api: FastAPI) -> None:
    router = api.router
    router.redirect_slashes = False
    not_found = router.default

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path not in ("", "/"):
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            # "//host" would be a protocol-relative URL: another site.
            if other and not other.startswith("//"):
                moved = {**scope, "path": other}
                if any(route.matches(moved)[0] is not Match.NONE for route in router.routes):
                    query = scope.get("query_string", b"").decode("latin-1")
                    location = other + (f"?{query}" if query else "")
                    await RedirectResponse(location, status_code=307)(scope, receive, send)
                    return
        await not_found(scope, receive, send)

    router.default = default
