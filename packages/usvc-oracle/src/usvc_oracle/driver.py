"""The slice of python-oracledb's async API the queue uses, and the pool it creates.

The queue is written against these protocols so that its unit tests can hand it a recording
fake; production code passes the real ``oracledb.AsyncConnectionPool``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, cast

import oracledb

from usvc_oracle.settings import OracleSettings

__all__ = ["ConnectionLike", "CursorLike", "PoolLike", "VarLike", "clob_as_text", "create_pool"]


class VarLike(Protocol):
    def getvalue(self, pos: int = 0) -> Any: ...


class CursorLike(Protocol):
    prefetchrows: int
    arraysize: int
    outputtypehandler: Any

    @property
    def rowcount(self) -> int: ...

    async def execute(self, statement: str, parameters: Any = None) -> Any: ...

    async def executemany(
        self,
        statement: str,
        parameters: Any,
        *,
        arraydmlrowcounts: bool = False,
        batcherrors: bool = False,
    ) -> None: ...

    async def fetchmany(self, size: int | None = None) -> list[Any]: ...

    async def fetchall(self) -> list[Any]: ...

    def var(self, typ: Any, size: int = 0, arraysize: int = 1) -> VarLike: ...

    def setinputsizes(self, *args: Any, **kwargs: Any) -> Any: ...

    def getarraydmlrowcounts(self) -> list[int]: ...

    def getbatcherrors(self) -> list[Any]: ...

    def close(self) -> None: ...


class ConnectionLike(Protocol):
    call_timeout: int
    #: while set, each statement carries its commit (thin: no extra round trip)
    autocommit: bool
    #: V$SESSION.MODULE and ACTION (write-only in the driver; sent with the next call)
    module: str
    action: str

    @property
    def transaction_in_progress(self) -> bool: ...

    def cursor(self) -> CursorLike: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def ping(self) -> None: ...


class PoolLike(Protocol):
    def acquire(self) -> Awaitable[ConnectionLike]: ...

    async def release(self, connection: ConnectionLike) -> None: ...

    async def drop(self, connection: ConnectionLike) -> None: ...

    async def close(self, force: bool = False) -> None: ...


def create_pool(settings: OracleSettings) -> PoolLike:
    """A fixed-size async pool (thin mode). Sessions connect in the background; a failure
    (bad password, unknown service) is raised by the next ``acquire``."""
    size = settings.ORACLE_POOL_SIZE
    pool = oracledb.create_pool_async(
        user=settings.ORACLE_USER,
        password=settings.ORACLE_PASSWORD.get_secret_value(),
        dsn=settings.ORACLE_DSN,
        min=size,
        max=size,
        increment=1,
        getmode=oracledb.POOL_GETMODE_TIMEDWAIT,
        wait_timeout=int(settings.ORACLE_POOL_WAIT_SECONDS * 1000),
        ping_interval=settings.ORACLE_PING_INTERVAL_SECONDS,
        expire_time=settings.ORACLE_KEEPALIVE_MINUTES,
        tcp_connect_timeout=settings.ORACLE_CONNECT_TIMEOUT_SECONDS,
        max_lifetime_session=settings.ORACLE_SESSION_MAX_LIFETIME_SECONDS,
        stmtcachesize=40,
        program="usvc-worker",
    )
    # The real pool's signatures name AsyncConnection where the protocol says ConnectionLike.
    return cast(PoolLike, pool)


def clob_as_text(cursor: Any, metadata: Any) -> Any:
    """Output type handler: fetch CLOB columns as ``str`` in the same round trip."""
    if metadata.type_code is oracledb.DB_TYPE_CLOB:
        return cursor.var(oracledb.DB_TYPE_LONG, arraysize=cursor.arraysize)
    return None
