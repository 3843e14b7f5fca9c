"""``MongoServiceRegistry``: the ``ServiceRegistry`` port on ``pymongo.AsyncMongoClient``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

import structlog
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError
from usvc_core.errors import ConfigurationError
from usvc_core.ports import InstanceInfo, ServiceDescription

from usvc_mongo.documents import (
    RegisteredInstance,
    description_from_document,
    instance_document,
    instance_from_document,
    schema_content,
    schema_fingerprint,
)
from usvc_mongo.errors import RegistryError, RegistryUnavailableError
from usvc_mongo.redaction import redact_uri, scrub

if TYPE_CHECKING:
    from usvc_mongo.settings import MongoSettings

__all__ = ["INSTANCES_COLLECTION", "SCHEMAS_COLLECTION", "MongoServiceRegistry"]

SCHEMAS_COLLECTION = "service_schemas"
INSTANCES_COLLECTION = "service_instances"
TTL_FIELD = "last_seen"
_INDEX_CONFLICT_CODES = (85, 86)  # IndexOptionsConflict (mongod), IndexKeySpecsConflict

_log = structlog.get_logger("usvc.mongo")

Document = dict[str, Any]


class MongoServiceRegistry:
    """Publishes schemas and instance heartbeats to two MongoDB collections.

    - ``service_schemas``: one document per service name + version. Its content (actions and
      their JSON Schemas) is written once, with ``$setOnInsert``; heartbeats of that version
      refresh its ``last_seen``, so it expires ``key_ttl_seconds`` after the version's last
      instance went silent.
    - ``service_instances``: one document per process, upserted by each heartbeat and
      deleted by :meth:`deregister`; its TTL index removes the ones that stopped beating.

    Every MongoDB failure is raised as :class:`RegistryUnavailableError` (cannot reach the
    server) or :class:`RegistryError`, with the URI's credentials removed from the message.
    """

    def __init__(
        self,
        uri: str,
        database: str = "microservices",
        *,
        key_ttl_seconds: int = 90,
        max_pool_size: int = 2,
        min_pool_size: int = 1,
        timeout_seconds: float = 10.0,
        app_name: str = "usvc",
    ) -> None:
        if key_ttl_seconds < 1:
            raise ConfigurationError("MONGODB_KEY_TTL_SECONDS must be at least 1")
        self._uri = uri
        self.key_ttl_seconds = key_ttl_seconds
        self.timeout_seconds = timeout_seconds
        #: the URI without its credentials (the only form that may be logged)
        self.redacted_uri = redact_uri(uri)
        #: how long finding a reachable server may take (also bounds ``close()``)
        self.server_selection_seconds = min(timeout_seconds, 5.0)
        connect_ms = int(self.server_selection_seconds * 1000)
        try:
            client: AsyncMongoClient[Document] = AsyncMongoClient(
                uri,
                maxPoolSize=max_pool_size,
                minPoolSize=min_pool_size,
                serverSelectionTimeoutMS=connect_ms,
                connectTimeoutMS=connect_ms,
                timeoutMS=int(timeout_seconds * 1000),  # bounds one operation, retries included
                tz_aware=True,
                appname=app_name,
            )
        except (PyMongoError, ValueError) as exc:
            # from None: the driver's exception may quote parts of the URI
            raise ConfigurationError(f"MONGODB_URI is not usable: {scrub(str(exc), uri)}") from None
        self._client = client
        self._db: AsyncDatabase[Document] = client[database]
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._published: dict[tuple[str, str], ServiceDescription] = {}

    @classmethod
    def from_settings(cls, settings: MongoSettings, service: str, **overrides: Any) -> Self:
        """Build one from ``MONGODB_*`` for the service named ``service``; ``overrides``
        win."""
        options: dict[str, Any] = {
            "key_ttl_seconds": settings.MONGODB_KEY_TTL_SECONDS,
            "max_pool_size": settings.MONGODB_MAX_POOL_SIZE,
            "min_pool_size": settings.MONGODB_MIN_POOL_SIZE,
            "app_name": f"usvc-{service}",
            **overrides,
        }
        return cls(settings.MONGODB_URI.get_secret_value(), settings.MONGODB_DATABASE, **options)

    def __repr__(self) -> str:
        return f"MongoServiceRegistry({self.redacted_uri!r}, {self._db.name!r})"

    @property
    def database(self) -> AsyncDatabase[Document]:
        """The registry's database, for consumers that query the collections themselves."""
        return self._db

    @property
    def schemas_collection(self) -> AsyncCollection[Document]:
        return self._db[SCHEMAS_COLLECTION]

    @property
    def instances_collection(self) -> AsyncCollection[Document]:
        return self._db[INSTANCES_COLLECTION]

    # --- the ServiceRegistry port ------------------------------------------------------------

    async def publish_schemas(self, description: ServiceDescription) -> None:
        """Write the version's schemas unless they are already there (write-once)."""
        try:
            await self._ensure_ready()
            await self._upsert_schemas(description)
        except PyMongoError as exc:
            raise self._error("publish schemas", exc) from exc
        self._published[(description.service, description.version)] = description

    async def heartbeat(self, instance: InstanceInfo) -> None:
        """Upsert the instance document and keep its version's schema record alive."""
        try:
            await self._ensure_ready()
            await self.instances_collection.update_one(
                {"_id": instance.instance_id},
                {"$set": instance_document(instance), "$currentDate": {TTL_FIELD: True}},
                upsert=True,
            )
            touched = await self.schemas_collection.update_one(
                {"service": instance.service, "version": instance.version},
                {"$currentDate": {TTL_FIELD: True}},
            )
            description = self._published.get((instance.service, instance.version))
            if touched.matched_count == 0 and description is not None:
                # Expired during a long outage, or the database was dropped: publish again.
                _log.warning(
                    "registry schema record missing; publishing it again",
                    service=instance.service,
                    version=instance.version,
                )
                self._ready = False
                await self._ensure_ready()
                await self._upsert_schemas(description)
        except PyMongoError as exc:
            raise self._error("heartbeat", exc) from exc

    async def deregister(self, instance_id: str) -> None:
        """Delete the instance document (graceful shutdown)."""
        try:
            await self.instances_collection.delete_one({"_id": instance_id})
        except PyMongoError as exc:
            raise self._error("deregister", exc) from exc

    # --- queries for consumers ---------------------------------------------------------------

    async def live_instances(
        self,
        service: str,
        *,
        version: str | None = None,
        max_age_seconds: float | None = None,
    ) -> list[RegisteredInstance]:
        """Instances of ``service`` that sent a heartbeat within ``max_age_seconds`` (default:
        the key TTL), oldest first.

        Filters on ``last_seen`` rather than trusting TTL deletion, which MongoDB runs only
        once a minute; the cut-off is taken on the server's clock, which wrote ``last_seen``.
        """
        max_age = self.key_ttl_seconds if max_age_seconds is None else max_age_seconds
        try:
            cutoff = await self._server_now() - timedelta(seconds=max_age)
            query: dict[str, Any] = {"service": service, TTL_FIELD: {"$gte": cutoff}}
            if version is not None:
                query["version"] = version
            docs = await self.instances_collection.find(query).sort("started_at", 1).to_list(None)
        except PyMongoError as exc:
            raise self._error("list live instances", exc) from exc
        return [instance_from_document(d) for d in docs]

    async def schemas(self, service: str, version: str) -> ServiceDescription | None:
        """The published schemas of one service version, or None."""
        try:
            doc = await self.schemas_collection.find_one({"service": service, "version": version})
        except PyMongoError as exc:
            raise self._error("read schemas", exc) from exc
        return description_from_document(doc) if doc is not None else None

    async def close(self) -> None:
        """Close the client (it ends its server sessions first, which takes up to
        ``server_selection_seconds`` when the server is down)."""
        await self._client.close()

    # --- internals -----------------------------------------------------------------------------

    async def _upsert_schemas(self, description: ServiceDescription) -> None:
        key = {"service": description.service, "version": description.version}
        try:
            stored = await self.schemas_collection.find_one_and_update(
                key,
                {
                    "$setOnInsert": schema_content(description, datetime.now(UTC)),
                    "$currentDate": {TTL_FIELD: True},
                },
                upsert=True,
                projection={"fingerprint": 1},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return  # another instance inserted it at the same moment: it is published
        if stored is not None and stored.get("fingerprint") != schema_fingerprint(description):
            _log.warning(
                "published schemas of this version differ from this process's actions; "
                "they are kept as first published: bump SERVICE_VERSION when actions change",
                service=description.service,
                version=description.version,
            )

    async def _ensure_ready(self) -> None:
        """Create the indexes once per process (and again after the records vanished)."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            await self.schemas_collection.create_index(
                [("service", 1), ("version", 1)], unique=True, name="service_version_unique"
            )
            await self.instances_collection.create_index(
                [("service", 1), (TTL_FIELD, 1)], name="service_last_seen"
            )
            for coll in (self.schemas_collection, self.instances_collection):
                await self._ensure_ttl_index(coll)
            self._ready = True

    async def _ensure_ttl_index(self, coll: AsyncCollection[Document]) -> None:
        """A TTL index on ``last_seen``; an existing one with another TTL is changed in place
        (``collMod``), since ``create_index`` refuses to change options."""
        ttl = self.key_ttl_seconds
        found, current = _ttl_index(await coll.index_information())
        if not found:
            try:
                await coll.create_index(TTL_FIELD, expireAfterSeconds=ttl, name="last_seen_ttl")
                return
            except OperationFailure as exc:
                if exc.code not in _INDEX_CONFLICT_CODES:
                    raise
                # another process created it with a different TTL meanwhile: fall through
        elif current == ttl:
            return
        await self._db.command(
            "collMod", coll.name, index={"keyPattern": {TTL_FIELD: 1}, "expireAfterSeconds": ttl}
        )
        _log.info("registry TTL index changed", collection=coll.name, old=current, new=ttl)

    async def _server_now(self) -> datetime:
        """The server's clock (``hello.localTime``); the local clock if it does not say."""
        hello = await self._client.admin.command("hello")
        local = hello.get("localTime")
        if isinstance(local, datetime):
            return local if local.tzinfo is not None else local.replace(tzinfo=UTC)
        return datetime.now(UTC)

    def _error(self, operation: str, exc: PyMongoError) -> RegistryError:
        message = f"registry {operation} failed: {type(exc).__name__}: {scrub(str(exc), self._uri)}"
        if isinstance(exc, ConnectionFailure) or exc.timeout:
            return RegistryUnavailableError(message)
        return RegistryError(message)


def _ttl_index(indexes: Mapping[str, Mapping[str, Any]]) -> tuple[bool, int | None]:
    """Whether an index on ``last_seen`` alone exists, and its TTL (None: not a TTL index)."""
    for spec in indexes.values():
        if [(str(f), d) for f, d in spec.get("key", [])] == [(TTL_FIELD, 1)]:
            ttl = spec.get("expireAfterSeconds")
            return True, int(ttl) if ttl is not None else None
    return False, None
