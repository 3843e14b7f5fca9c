"""The entry point ``usvc.surfaces: mongo_registry``, kept light: every service with
usvc-mongo installed loads it at start-up, and pymongo (about half a second to import) is
imported only when ``MONGODB_URI`` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from usvc_core.app import Application

    from usvc_mongo.surface import RegistrySurface

__all__ = ["registry_surface"]


def registry_surface(app: Application) -> RegistrySurface | None:
    """The registry surface, or None while ``MONGODB_URI`` is empty."""
    if not app.settings.MONGODB_URI.get_secret_value():
        return None
    from usvc_mongo.surface import registry_surface as build

    return build(app)
