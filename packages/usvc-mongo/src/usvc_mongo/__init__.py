"""usvc Mongo: the MongoDB service registry (schemas + instance heartbeats) on pymongo's
native async API (``pymongo.AsyncMongoClient``).

Constants live with their modules: ``usvc_mongo.surface.REGISTRY_CHECK`` (the health check
name), ``usvc_mongo.registry.SCHEMAS_COLLECTION`` and ``INSTANCES_COLLECTION``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usvc_mongo.documents import RegisteredInstance
    from usvc_mongo.errors import RegistryError, RegistryUnavailableError
    from usvc_mongo.redaction import redact_uri, scrub
    from usvc_mongo.registry import MongoServiceRegistry
    from usvc_mongo.settings import MongoSettings
    from usvc_mongo.surface import RegistrySurface, registry_surface

__version__ = "0.1.0"

# Names are imported on first use (PEP 562): the start-up entry point (usvc_mongo.entry)
# must not pull in pymongo for services that leave MONGODB_URI empty.
_WHERE = {
    "MongoServiceRegistry": "usvc_mongo.registry",
    "MongoSettings": "usvc_mongo.settings",
    "RegisteredInstance": "usvc_mongo.documents",
    "RegistryError": "usvc_mongo.errors",
    "RegistrySurface": "usvc_mongo.surface",
    "RegistryUnavailableError": "usvc_mongo.errors",
    "redact_uri": "usvc_mongo.redaction",
    "registry_surface": "usvc_mongo.surface",
    "scrub": "usvc_mongo.redaction",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'usvc_mongo' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "MongoServiceRegistry",
    "MongoSettings",
    "RegisteredInstance",
    "RegistryError",
    "RegistrySurface",
    "RegistryUnavailableError",
    "redact_uri",
    "registry_surface",
    "scrub",
]
