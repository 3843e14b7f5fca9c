"""The dashboard's pages: login, logout, the app shell and its static files, and the
security headers of the whole ``/admin`` tree.

The shell is one HTML page whose script (``static/app.js``) draws everything with DOM APIs
(``textContent``, never ``innerHTML`` with data), under a Content-Security-Policy that
allows no inline script or style and nothing from another origin.
"""

from __future__ import annotations

import functools
import html
from importlib.resources import files
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from usvc_core.errors import QueueError

from usvc_http.admin.auth import SESSION_COOKIE, SESSION_SECONDS, AdminAuth, foreign_origin

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = ["SECURITY_HEADERS", "pages_router", "secure_admin_responses"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer, Chromium sends "Origin: null" on the
    # login form's POST, and the Origin check could not tell it from a foreign page.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_MAX_LOGIN_BODY = 4096


_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class _AdminHeaders:
    """Pure ASGI (Starlette's BaseHTTPMiddleware would cost every request, /dev/job and
    /metrics too, an extra task): adds the headers to responses under /admin only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/admin"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _RAW_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def secure_admin_responses(api: FastAPI) -> None:
    """Every response under /admin carries the security headers."""
    api.add_middleware(_AdminHeaders)


@functools.cache
def _static(name: str) -> str:
    return files("usvc_http.admin").joinpath("static", name).read_text(encoding="utf-8")


def _login_page(service: str, message: str | None) -> str:
    notice = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(service)} · usvc admin</title>
<link rel="stylesheet" href="/admin/static/app.css">
</head>
<body class="login">
<main>
<h1>{html.escape(service)}</h1>
<p>usvc admin: sign in with the service's <code>ADMIN_TOKEN</code>.</p>
{notice}
<form method="post" action="/admin/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"""


def _shell(service: str, csrf_token: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{html.escape(csrf_token)}">
<meta name="service" content="{html.escape(service)}">
<title>{html.escape(service)} · usvc admin</title>
<link rel="stylesheet" href="/admin/static/app.css">
<script src="/admin/static/app.js" defer></script>
</head>
<body>
<header>
<a class="brand" href="#/">{html.escape(service)}</a>
<nav><a href="#/">Overview</a><a href="#/failed">Failed jobs</a><a href="#/jobs">All jobs</a></nav>
<form method="post" action="/admin/logout" id="logout">
<input type="hidden" name="csrf_token" value="{html.escape(csrf_token)}">
<button type="submit">Sign out</button>
</form>
</header>
<main id="view"><p>Loading…</p></main>
<footer><span id="refreshed"></span></footer>
</body>
</html>
"""


def pages_router(context: SurfaceContext, auth: AdminAuth) -> APIRouter:
    """``/admin/``, ``/admin/login``, ``/admin/logout`` and ``/admin/static/*``."""
    service = context.settings.MICROSERVICE_NAME
    router = APIRouter(prefix="/admin", include_in_schema=False)

    def _cookie(response: Response, value: str, max_age: int) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=max_age,
            path="/admin",
            httponly=True,
            samesite="strict",
        )

    @router.get("/")
    async def dashboard(request: Request) -> Response:
        caller = await auth.authenticate(request)
        if caller is None or caller.via != "session" or caller.csrf_token is None:
            return RedirectResponse("/admin/login", status_code=303)
        return HTMLResponse(_shell(service, caller.csrf_token))

    @router.get("/login")
    async def login_form() -> HTMLResponse:
        return HTMLResponse(_login_page(service, None))

    @router.post("/login")
    async def login(request: Request) -> Response:
        if foreign_origin(request):
            return HTMLResponse(_login_page(service, "sign in from this page"), 403)
        body = await request.body()
        if len(body) > _MAX_LOGIN_BODY:
            return HTMLResponse(_login_page(service, "request too large"), 413)
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not given or not auth.token_matches(given):
            return HTMLResponse(_login_page(service, "wrong token"), 401)
        response = RedirectResponse("/admin/", status_code=303)
        _cookie(response, auth.new_session(), SESSION_SECONDS)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        caller = auth.caller(request)
        body = await request.body()
        sent = parse_qs(body.decode("utf-8", "replace")[:_MAX_LOGIN_BODY]).get("csrf_token", [""])
        token = caller.csrf_token if caller is not None else None
        if token is not None and not auth.csrf_matches(sent[0], token):
            return HTMLResponse(_login_page(service, "sign out from the dashboard"), 403)
        if token is not None:
            try:
                await auth.end_session(request)  # refused by every process from now on
            except QueueError:
                return HTMLResponse(_login_page(service, "job queue unavailable; retry"), 503)
        response = RedirectResponse("/admin/login", status_code=303)
        _cookie(response, "", 0)
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        media = _STATIC.get(name)
        if media is None:
            return Response(status_code=404)
        return Response(_static(name), media_type=media)

    return router
