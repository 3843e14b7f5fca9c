"""The dashboard's pages: login (failures limited per client address), logout, the app
shell and its static files.

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

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from usvc_http.admin.auth import SESSION_COOKIE, SESSION_SECONDS, AdminAuth
from usvc_http.admin.login_limit import LoginLimiter

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = ["pages_router"]

_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


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
<nav>
<a href="#/">Overview</a>
<a href="#/jobs?status=Failed" data-status="Failed">Failed jobs</a>
<a href="#/jobs" data-status="">All jobs</a>
<a href="#/actions">Actions</a>
<a href="#/workers">Workers</a>
<a href="#/schedules">Schedules</a>
</nav>
<button type="button" id="refresh-toggle" class="plain" aria-pressed="false">
Pause auto-refresh</button>
<form method="post" action="/admin/logout" id="logout">
<input type="hidden" name="csrf_token" value="{html.escape(csrf_token)}">
<button type="submit">Sign out</button>
</form>
</header>
<main id="view"><p>Loading…</p></main>
<footer><span id="refreshed"></span></footer>
<dialog id="confirm" aria-labelledby="confirm-text">
<p id="confirm-text"></p>
<p class="buttons">
<button type="button" id="confirm-ok">Confirm</button>
<button type="button" id="confirm-cancel" class="plain">Keep as is</button>
</p>
</dialog>
</body>
</html>
"""


def _client(request: Request) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For when there is one)."""
    return request.client.host if request.client is not None else "unknown"


def pages_router(context: SurfaceContext, auth: AdminAuth, limiter: LoginLimiter) -> APIRouter:
    """``/admin/``, ``/admin/login``, ``/admin/logout`` and ``/admin/static/*``."""
    service = context.settings.MICROSERVICE_NAME
    router = APIRouter(prefix="/admin", include_in_schema=False)

    def _cookie(request: Request, response: Response, value: str, max_age: int) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=max_age,
            path="/admin",
            secure=auth.secure_cookie(request),
            httponly=True,
            samesite="strict",
        )

    @router.get("/")
    async def dashboard(request: Request) -> Response:
        caller = await auth.authenticate(request)  # a logged-out session is refused
        if caller is None or caller.via != "session" or caller.csrf_token is None:
            return RedirectResponse("/admin/login", status_code=303)
        return HTMLResponse(_shell(service, caller.csrf_token))

    @router.get("/login")
    async def login_form() -> HTMLResponse:
        return HTMLResponse(_login_page(service, None))

    @router.post("/login")
    async def login(request: Request) -> Response:
        if auth.foreign_origin(request):
            return HTMLResponse(_login_page(service, "sign in from this page"), 403)
        client = _client(request)
        wait = limiter.retry_after(client)
        if wait is not None:  # refused before the body is read or the token compared
            return HTMLResponse(
                _login_page(service, f"too many failed sign-ins: try again in {wait} s"),
                429,
                headers={"Retry-After": str(wait)},
            )
        body = await request.body()  # at most HTTP_MAX_BODY_BYTES (BodyLimit)
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not given or not auth.token_matches(given):
            limiter.failed(client)
            return HTMLResponse(_login_page(service, "wrong token"), 401)
        limiter.succeeded(client)
        response = RedirectResponse("/admin/", status_code=303)
        _cookie(request, response, auth.new_session(), SESSION_SECONDS)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        caller = auth.caller(request)
        body = await request.body()  # at most HTTP_MAX_BODY_BYTES (BodyLimit)
        sent = parse_qs(body.decode("utf-8", "replace")).get("csrf_token", [""])
        token = caller.csrf_token if caller is not None else None
        if token is not None and not auth.csrf_matches(sent[0], token):
            return HTMLResponse(_login_page(service, "sign out from the dashboard"), 403)
        if token is not None:
            await auth.end_session(request)  # refused by every process from now on
        response = RedirectResponse("/admin/login", status_code=303)
        _cookie(request, response, "", 0)
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        media = _STATIC.get(name)
        if media is None:
            return Response(status_code=404)
        return Response(_static(name), media_type=media)

    return router
