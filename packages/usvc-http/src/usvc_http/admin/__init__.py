"""The admin tree: an authenticated API under ``/admin/api`` and a dashboard at ``/admin/``,
present only when ``ADMIN_TOKEN`` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI
from usvc_core.ports import QueueAdmin

from usvc_http.admin.api import admin_router
from usvc_http.admin.auth import AdminAuth
from usvc_http.admin.gate import AdminApiGate
from usvc_http.admin.login_limit import LoginLimiter
from usvc_http.admin.pages import pages_router
from usvc_http.security import AdminHeaders

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

    from usvc_http.settings import HttpSettings

__all__ = ["mount_admin"]

_log = structlog.get_logger("usvc.http.admin")


def mount_admin(api: FastAPI, context: SurfaceContext, http: HttpSettings) -> bool:
    """Add the admin API and dashboard to ``api``; False when the queue cannot serve them.

    Every response under /admin carries the security headers (AdminHeaders, outermost
    of the two), and the API authenticates before anything reads a body (AdminApiGate).
    """
    token = http.ADMIN_TOKEN.get_secret_value()
    if not token:
        return False
    queue = context.queue
    if not isinstance(queue, QueueAdmin):
        _log.warning(
            "ADMIN_TOKEN is set, but the queue does not implement QueueAdmin; no admin API",
            queue=type(queue).__name__,
        )
        return False
    # Logouts are kept in the queue store, so every process refuses a revoked session.
    auth = AdminAuth(token, http.ADMIN_PUBLIC_ORIGIN, revocations=queue)
    limiter = LoginLimiter(http.ADMIN_LOGIN_ATTEMPTS_PER_MINUTE)
    api.include_router(admin_router(context, auth, queue))
    api.include_router(pages_router(context, auth, limiter))
    api.add_middleware(AdminApiGate, auth=auth)
    api.add_middleware(AdminHeaders)
    return True
