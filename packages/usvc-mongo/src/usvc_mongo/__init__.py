"""usvc Mongo: the MongoDB service registry (schemas + instance heartbeats)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from usvc_core.errors import ConfigurationError
from usvc_core.ports import Surface

if TYPE_CHECKING:
    from usvc_core.app import Application

__version__ = "0.1.0"

__all__ = ["registry_surface"]


def registry_surface(app: Application) -> Surface | None:
    """Entry point ``usvc.surfaces: mongo_registry``; disabled while MONGODB_URI is empty."""
    if not app.settings.MONGODB_URI.get_secret_value():
        return None
    raise ConfigurationError("the MongoDB registry is not implemented yet in this version")
