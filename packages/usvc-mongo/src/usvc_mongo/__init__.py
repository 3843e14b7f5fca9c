"""usvc Mongo: the MongoDB service registry (schemas + instance heartbeats) on pymongo's
native async API (``pymongo.AsyncMongoClient``)."""

from __future__ import annotations

from usvc_mongo.documents import RegisteredInstance
from usvc_mongo.errors import RegistryError, RegistryUnavailableError
from usvc_mongo.redaction import redact_uri, scrub
from usvc_mongo.registry import INSTANCES_COLLECTION, SCHEMAS_COLLECTION, MongoServiceRegistry
from usvc_mongo.surface import (
    RED_AFTER_FAILURES,
    REGISTRY_CHECK,
    RegistrySurface,
    registry_surface,
)

__version__ = "0.1.0"

__all__ = [
    "INSTANCES_COLLECTION",
    "RED_AFTER_FAILURES",
    "REGISTRY_CHECK",
    "SCHEMAS_COLLECTION",
    "MongoServiceRegistry",
    "RegisteredInstance",
    "RegistryError",
    "RegistrySurface",
    "RegistryUnavailableError",
    "redact_uri",
    "registry_surface",
    "scrub",
]
