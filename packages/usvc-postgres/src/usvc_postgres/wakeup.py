"""LISTEN/NOTIFY wake-up: a job enqueued by any process, anywhere, wakes this process's
workers within milliseconds instead of at their next poll.

A hint only: polling stays on (``POLLING_INTERVAL_SECONDS``) for what no notification
reports (a delayed job falling due, an expired lease) and for when notifications cannot
arrive. The listener holds a connection of its own, outside the pool. In ``auto`` mode it
first checks that a probe NOTIFY comes back: behind PgBouncer in transaction pooling (or
any proxy that shares server sessions) LISTEN succeeds but nothing ever arrives, and the
queue then polls alone. A lost listener connection is re-made in the background, and the
workers are woken once it is back (what was enqueued meanwhile was never announced).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import asyncpg
import structlog

from usvc_postgres.settings import ListenMode, PostgresSettings

__all__ = ["Listener"]

log = structlog.get_logger("usvc_postgres")

_PROBE_WAIT = 2.0  # seconds a probe notification may take to come back
_RETRY_MIN, _RETRY_MAX = 0.5, 10.0


class Listener:
    """LISTEN on ``channel``; ``wake(payload)`` for each notification."""

    def __init__(
        self,
        settings: PostgresSettings,
        channel: str,
        wake: Callable[[str], None],
        server_settings: dict[str, str],
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.wake = wake
        self.server_settings = server_settings
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._probe: tuple[str, asyncio.Future[None]] | None = None
        self._lost = asyncio.Event()
        #: True while notifications arrive; False: polling alone
        self.active = False

    @property
    def enabled(self) -> bool:
        s = self.settings
        return s.POSTGRES_LISTEN is not ListenMode.OFF and not s.POSTGRES_PGBOUNCER

    async def start(self) -> None:
        """Listen now when the server answers (else keep trying in the background)."""
        if not self.enabled or self._task is not None:
            return
        try:
            await self._connect()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if self.settings.POSTGRES_LISTEN is ListenMode.ON:
                raise
            log.warning("postgres_listen_unavailable", error=str(exc))
        else:
            if not self.active:
                return  # the probe said notifications cannot arrive here: poll alone
        self._task = asyncio.create_task(self._keep(), name="usvc-postgres-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            **self.settings.connect_kwargs(),
            statement_cache_size=0,
            server_settings=self.server_settings,
        )
        try:
            await asyncio.wait_for(conn.add_listener(self.channel, self._on_notification), 5.0)
            conn.add_termination_listener(lambda _conn: self._lost.set())
            self._conn = conn
            self._lost.clear()
            if self.settings.POSTGRES_LISTEN is ListenMode.AUTO and not await self._probed(conn):
                log.warning(
                    "postgres_listen_probe_lost",
                    channel=self.channel,
                    detail="a NOTIFY did not come back (PgBouncer transaction pooling?); "
                    "the queue polls alone",
                )
                await self._drop()
                return
        except BaseException:
            await self._drop()
            raise
        self.active = True

    async def _probed(self, conn: asyncpg.Connection) -> bool:
        """Whether a NOTIFY sent on another connection reaches ``conn``'s LISTEN."""
        marker = f"probe:{uuid.uuid4().hex}"
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probe = (marker, arrived)
        try:
            other = await asyncpg.connect(**self.settings.connect_kwargs(), statement_cache_size=0)
            try:
                await asyncio.wait_for(other.execute(f"NOTIFY {self.channel}, '{marker}'"), 5.0)
            finally:
                other.terminate()
            await asyncio.wait_for(asyncio.shield(arrived), _PROBE_WAIT)
        except TimeoutError:
            return False
        finally:
            self._probe = None
        return True

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        probe = self._probe
        if probe is not None and payload == probe[0]:
            if not probe[1].done():
                probe[1].set_result(None)
            return
        self.wake(payload)

    async def _drop(self) -> None:
        self.active = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def _keep(self) -> None:
        """Re-make a lost listener connection, with backoff; check a live one now and then
        (a half-open TCP connection reports nothing by itself)."""
        delay = _RETRY_MIN
        while True:
            if self._conn is None or self._conn.is_closed():
                await self._drop()
                try:
                    await self._connect()
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                    continue
                if not self.active:
                    return  # the probe said notifications cannot arrive here: poll alone
                delay = _RETRY_MIN
                self.wake("")  # jobs enqueued while we were not listening
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 5.0)
            conn = self._conn
            if conn is not None and not conn.is_closed() and not self._lost.is_set():
                try:
                    await asyncio.wait_for(conn.execute("SELECT 1"), 5.0)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    conn.terminate()
            if self._lost.is_set() and conn is not None:
                conn.terminate()
