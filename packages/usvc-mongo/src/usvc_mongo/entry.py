"""The entry point ``usvc.surfaces: mongo_registry``, kept light: every service with
usvc-mongo installed loads it at start-up, and pymongo (about half a second to import) is
imported only when ``MONGODB_URI`` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from usvc_mongo.settings import mongo_settings

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

    from usvc_mongo.surface import RegistrySurface

__all__ = ["registry_surface"]


def registry_surface(context: SurfaceContext) -> RegistrySurface | None:
    """The registry surface, or None while ``MONGODB_URI`` is empty."""
    if not mongo_settings(context.settings).enabled:
        return None
    from usvc_mongo.surface import registry_surface as build

    return build(context)
