"""The queue's connections: an asyncpg pool, every round trip bounded, every failure of
the server or the network turned into :class:`~usvc_core.errors.QueueUnavailableError`.

A round trip that gets no answer in ``POSTGRES_COMMAND_TIMEOUT_SECONDS`` (a network cut
that drops nothing, a frozen server) ends its connection: asyncpg's own timeout would send
a cancel request over that same dead path and wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from usvc_core.errors import ConfigurationError, QueueError, QueueUnavailableError

from usvc_postgres.settings import PostgresSettings

__all__ = ["Connections", "is_unavailable", "server_settings"]

T = TypeVar("T")

# SQLSTATE classes that pass: connection exceptions, insufficient resources, operator
# intervention (shutdown, statement timeout, cancel), transaction rollback (deadlock,
# serialization), system errors.
_PASSING_CLASSES = frozenset({"08", "53", "57", "40", "58"})
_PASSING_STATES = frozenset({"25P03", "55P03"})  # idle-in-transaction timeout, lock timeout
_REFUSED_STATES = frozenset({"28000", "28P01", "3D000"})  # bad login, bad password, no db


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server cannot be reached right now (worth retrying)."""
    if isinstance(
        exc, OSError | TimeoutError | asyncpg.PostgresConnectionError | asyncpg.InternalClientError
    ):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc)
        return isinstance(exc, asyncpg.ConnectionDoesNotExistError) or any(
            word in text for word in ("closed", "closing", "not connected")
        )
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _PASSING_CLASSES or state in _PASSING_STATES
    return False


def server_settings(settings: PostgresSettings) -> dict[str, str]:
    """Session settings sent at connect, so that the server itself ends what a dead or
    frozen worker would hold: a statement, an open transaction (row locks, the claim
    lock), a session whose client vanished. Behind PgBouncer in transaction pooling a
    session is not ours: set these on the role instead (the README says how)."""
    if settings.POSTGRES_PGBOUNCER:
        return {}
    keepalive = str(settings.POSTGRES_TCP_KEEPALIVE_SECONDS)
    return {
        "application_name": "usvc",
        "statement_timeout": str(int(settings.POSTGRES_STATEMENT_TIMEOUT_SECONDS * 1000)),
        "idle_in_transaction_session_timeout": str(
            int(settings.POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS * 1000)
        ),
        "tcp_keepalives_idle": keepalive,
        "tcp_keepalives_interval": keepalive,
        "tcp_keepalives_count": "3",
    }


async def _no_reset(connection: asyncpg.Connection) -> None:
    """The pool's reset on release, a round trip per operation by default: not needed, no
    operation leaves session state behind (advisory locks are transaction-scoped, LISTEN
    runs on a connection of its own)."""


def _terminate(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(asyncpg.InterfaceError):  # released already: closed by asyncpg
        if not conn.is_closed():
            conn.terminate()


class Connections:
    """The pool, opened lazily, and :meth:`run`: one operation on one connection."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._closed = False

    async def open(self) -> None:
        self._closed = False
        await self._ensure_pool()

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._closed:
            raise QueueUnavailableError("the PostgreSQL queue is closed")
        async with self._opening:
            if self._pool is None:
                s = self.settings
                try:
                    self._pool = await asyncpg.create_pool(
                        **s.connect_kwargs(),
                        # No floor: asyncpg would keep reconnecting to restore it through an
                        # outage (and log each try); connections are made on demand.
                        min_size=0,
                        max_size=s.POSTGRES_POOL_SIZE,
                        statement_cache_size=0 if s.POSTGRES_PGBOUNCER else 100,
                        max_inactive_connection_lifetime=60.0,
                        server_settings=server_settings(s),
                        reset=_no_reset,
                    )
                except BaseException as exc:
                    raise self.translate(exc, "connect") from exc
            return self._pool

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    def translate(self, exc: BaseException, operation: str) -> BaseException:
        """The kit's error for a driver error (others pass through unchanged)."""
        if isinstance(exc, QueueError | ConfigurationError | asyncio.CancelledError):
            return exc
        where = self.settings.where()
        if isinstance(exc, asyncpg.PostgresError) and (
            getattr(exc, "sqlstate", "") in _REFUSED_STATES
        ):
            return ConfigurationError(f"the PostgreSQL queue at {where} refused us: {exc}")
        if is_unavailable(exc):
            kind = type(exc).__name__
            return QueueUnavailableError(
                f"PostgreSQL queue unavailable ({operation} at {where}): {kind}: {exc}"
            )
        if isinstance(exc, asyncpg.PostgresError):
            return QueueError(f"PostgreSQL queue {operation} failed: {exc}")
        return exc

    async def run(self, operation: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` on a pooled connection, within the command timeout; driver errors as the
        kit's errors. A connection that failed or timed out is closed, and the pool's idle
        connections are renewed (after a server restart they are all dead)."""
        pool = await self._ensure_pool()
        timeout = self.settings.POSTGRES_COMMAND_TIMEOUT_SECONDS
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.acquire()
        except BaseException as exc:
            raise self.translate(exc, operation) from exc
        try:
            async with asyncio.timeout(timeout):
                return await work(conn)
        except BaseException as exc:
            broken = isinstance(exc, asyncio.CancelledError | asyncpg.InternalClientError)
            if broken or is_unavailable(exc):
                _terminate(conn)  # its state is unknown: never hand it out again
                if not isinstance(exc, asyncio.CancelledError):
                    with contextlib.suppress(Exception):
                        await pool.expire_connections()
            raise self.translate(exc, operation) from exc
        finally:
            # A connection asyncpg saw die was released already (and may be released twice).
            with contextlib.suppress(asyncpg.InterfaceError):
                await pool.release(conn)

    async def fetch(self, operation: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.run(operation, lambda conn: conn.fetch(sql, *args))

    async def fetchrow(self, operation: str, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.run(operation, lambda conn: conn.fetchrow(sql, *args))

    async def fetchval(self, operation: str, sql: str, *args: Any) -> Any:
        return await self.run(operation, lambda conn: conn.fetchval(sql, *args))

    async def execute(self, operation: str, sql: str, *args: Any) -> str:
        return await self.run(operation, lambda conn: conn.execute(sql, *args))
