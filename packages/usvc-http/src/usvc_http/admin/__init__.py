"""The admin tree: an authenticated API under ``/admin/api`` and a dashboard at ``/admin/``,
present only when ``ADMIN_TOKEN`` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI
from usvc_core.ports import QueueAdmin

from usvc_http.admin.api import admin_router
from usvc_http.admin.auth import AdminAuth
from usvc_http.admin.pages import pages_router, secure_admin_responses

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = ["mount_admin"]

_log = structlog.get_logger("usvc.http.admin")


def mount_admin(api: FastAPI, context: SurfaceContext, token: str) -> bool:
    """Add the admin API and dashboard to ``api``; False when the queue cannot serve them."""
    if not token:
        return False
    queue = context.queue
    if not isinstance(queue, QueueAdmin):
        _log.warning(
            "ADMIN_TOKEN is set, but the queue does not implement QueueAdmin; no admin API",
            queue=type(queue).__name__,
        )
        return False
    auth = AdminAuth(token, revocations=queue)  # logouts kept in the store (every process)
    api.include_router(admin_router(context, auth, queue))
    api.include_router(pages_router(context, auth))
    secure_admin_responses(api)
    return True
