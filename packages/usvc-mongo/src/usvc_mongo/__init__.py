"""usvc Mongo: the MongoDB service registry (schemas + instance heartbeats) on pymongo's
native async API (``pymongo.AsyncMongoClient``).

Constants live with their modules: ``usvc_mongo.surface.REGISTRY_CHECK`` (the health check
name), ``usvc_mongo.registry.SCHEMAS_COLLECTION`` and ``INSTANCES_COLLECTION``.
"""

from __future__ import annotations

from usvc_mongo.documents import RegisteredInstance
from usvc_mongo.errors import RegistryError, RegistryUnavailableError
from usvc_mongo.redaction import redact_uri, scrub
from usvc_mongo.registry import MongoServiceRegistry
from usvc_mongo.surface import RegistrySurface, registry_surface

__version__ = "0.1.0"

__all__ = [
    "MongoServiceRegistry",
    "RegisteredInstance",
    "RegistryError",
    "RegistrySurface",
    "RegistryUnavailableError",
    "redact_uri",
    "registry_surface",
    "scrub",
]
