"""One SQLite connection on its own thread, writing with group commit.

Why not aiosqlite: it runs every statement as its own hop to its thread (about 60-110 us
here, far more than the SQL), and its public API cannot run a whole transaction
(``BEGIN IMMEDIATE``, several statements, ``COMMIT``) in one hop. Group commit needs
exactly that, so this module keeps aiosqlite's design (one thread owns the connection, the
event loop waits on futures) with a function-per-hop interface.

Group commit: write operations wait in the thread's inbox; each time the thread is free it
takes *all* waiting operations and runs them in one transaction, then releases their
callers with one wake-up of the event loop. While a transaction (and its fsync) runs, the
event loop keeps working and the next batch gathers, so the number of commits adapts to
the load by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

from usvc_core.errors import QueueError, QueueUnavailableError, UsvcError

__all__ = ["ConnectionThread", "Durability", "synchronous_for"]

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
_Outcome = tuple[bool, Any]  # (ok, result or exception)


class Durability(StrEnum):
    """How much of the queue's state a power loss or OS crash may take back.

    A crash of a worker process alone never loses a committed transaction in either mode
    (WAL); the modes differ only when the whole machine stops.
    """

    #: Enqueues and recorded outcomes (complete, fail, retry, release) are on disk
    #: (``synchronous=FULL``, an fsync) before the call returns. Claims, starts, lease
    #: renewals, reclaims and purges commit with ``synchronous=NORMAL`` and reach the disk
    #: with the next fsync: a power loss can only undo them for workers it killed as well.
    FULL = "full"
    #: Every commit uses ``synchronous=NORMAL``: a power loss may undo the last
    #: transactions, including enqueues and outcomes that had returned.
    NORMAL = "normal"


def synchronous_for(durability: Durability, durable: bool) -> str:
    """The ``PRAGMA synchronous`` level of a transaction holding a ``durable`` operation."""
    return "FULL" if durable and durability is Durability.FULL else "NORMAL"


def queue_error(exc: sqlite3.Error, where: str) -> QueueError:
    """The kit's error for an SQLite failure; busy and I/O errors are transient."""
    if isinstance(exc, sqlite3.OperationalError):
        return QueueUnavailableError(f"SQLite queue {where}: {exc}")
    return QueueError(f"SQLite queue {where}: {type(exc).__name__}: {exc}")


class _Item:
    """One piece of work in the inbox: a write operation ``fn(conn)`` that joins a group
    transaction, or a plain call ``fn()`` that runs on its own (reads, connecting)."""

    __slots__ = ("durable", "fn", "future", "write")

    def __init__(
        self, fn: Callable[..., Any], future: asyncio.Future[Any], *, write: bool, durable: bool
    ) -> None:
        self.fn = fn
        self.future = future
        self.write = write
        self.durable = durable


class _OpBroke(Exception):  # noqa: N818 - internal signal
    """An operation hit an SQLite error: its transaction is rolled back."""

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error


def _settle_all(settled: Sequence[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for fut, (ok, value) in settled:
        if fut.done():
            continue  # the caller was cancelled; the work happened anyway
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class ConnectionThread:
    """Owns one ``sqlite3`` connection; runs reads alone and writes in group transactions.

    Each write operation is a function of the connection that returns its result, or
    raises a :class:`~usvc_core.errors.UsvcError` after writing nothing (lease lost,
    duplicate key); either way the other operations of its transaction go on. An operation
    that hits an SQLite error fails alone: the transaction is rolled back and run again
    without it. A caller is released once the transaction holding its operation committed
    with the durability it asked for.
    """

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], where: str, durability: Durability
    ) -> None:
        self._connect = connect
        self.where = where
        self._durability = durability
        self._inbox: SimpleQueue[list[_Item] | None] = SimpleQueue()
        # Work submitted during one turn of the event loop goes to the thread together, at
        # the end of that turn: one wake-up of the thread instead of one per operation, and
        # the operations of one turn (say, ten completions and the next claim) share a round.
        self._outbox: list[_Item] = []
        self._thread = threading.Thread(target=self._serve, name=f"usvc-sqlite {where}")
        # A daemon thread: a queue nobody closed must not keep the interpreter alive.
        self._thread.daemon = True
        self._conn: sqlite3.Connection | None = None
        self._sync = ""  # the connection's PRAGMA synchronous, as last set
        self._closed = False
        self.transactions = 0  #: write transactions committed
        self.operations = 0  #: write operations they carried

    # --- on the event loop -----------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection; only for functions running on this thread."""
        if self._conn is None:
            raise QueueUnavailableError(f"SQLite queue {self.where} is not open")
        return self._conn

    def _submit(self, fn: Callable[..., T], *, write: bool, durable: bool) -> asyncio.Future[T]:
        if self._closed:
            raise QueueUnavailableError(f"SQLite queue {self.where} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if not self._outbox:
            loop.call_soon(self._flush)
        self._outbox.append(_Item(fn, fut, write=write, durable=durable))
        return fut

    def _flush(self) -> None:
        items, self._outbox = self._outbox, []
        if items:  # close() may have flushed this turn's work already
            self._inbox.put(items)

    async def call(self, fn: Work[T]) -> T:
        """Run ``fn(conn)`` on the thread, outside any write transaction (one hop)."""
        return await self._submit(lambda: fn(self.conn), write=False, durable=False)

    async def write(self, fn: Work[T], *, durable: bool) -> T:
        """Run ``fn(conn)`` in the next group transaction; return once it committed."""
        return await self._submit(fn, write=True, durable=durable)

    async def open(self) -> None:
        """Start the thread and connect on it."""
        self._thread.start()

        def connect() -> None:
            self._conn = self._connect()

        try:
            await self._submit(connect, write=False, durable=False)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish the work already submitted, close the connection, end the thread."""
        if self._closed:
            return
        if not self._thread.is_alive():
            self._closed = True
            return

        def disconnect() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        done = self._submit(disconnect, write=False, durable=False)
        self._closed = True
        self._flush()
        self._inbox.put(None)
        await done

    # --- on the connection thread ------------------------------------------------------------

    def _serve(self) -> None:
        running = True
        while running:
            first = self._inbox.get()
            items: list[_Item] = []
            if first is None:
                running = False
            else:
                items.extend(first)
            while True:  # everything that gathered meanwhile joins this round
                try:
                    more = self._inbox.get_nowait()
                except Empty:
                    break
                if more is None:
                    running = False
                else:
                    items.extend(more)
            self._round(items)

    def _round(self, items: list[_Item]) -> None:
        """Run what gathered: writes that need no fsync first, in one transaction, and
        release their callers at once (they need not wait for the fsync of the others);
        then the writes that must be on disk, in a second one; then the plain calls."""
        light = [i for i in items if i.write and not self._needs_sync(i)]
        heavy = [i for i in items if i.write and self._needs_sync(i)]
        for group in (light, heavy):
            if group:
                self._release(
                    list(zip((i.future for i in group), self._run_group(group), strict=True))
                )
        calls = [i for i in items if not i.write]
        if calls:
            self._release([(i.future, self._run_call(i)) for i in calls])

    def _needs_sync(self, item: _Item) -> bool:
        return item.durable and self._durability is Durability.FULL

    def _run_group(self, group: list[_Item]) -> list[_Outcome]:
        try:
            return self._run_writes(group)
        except BaseException as exc:  # a bug must not leave callers waiting forever
            return [(False, exc)] * len(group)

    def _run_call(self, item: _Item) -> _Outcome:
        try:
            return True, item.fn()
        except sqlite3.Error as exc:
            return False, queue_error(exc, self.where)
        except BaseException as exc:
            return False, exc

    @staticmethod
    def _release(settled: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
        for fut, outcome in settled:
            by_loop.setdefault(fut.get_loop(), []).append((fut, outcome))
        for loop, group in by_loop.items():
            # RuntimeError: that event loop is gone; nobody waits for these results.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, group)

    def _run_writes(self, batch: Sequence[_Item]) -> list[_Outcome]:
        """Run ``batch`` in one transaction; an operation that breaks it fails alone."""
        conn = self._conn
        if conn is None:
            error = QueueUnavailableError(f"SQLite queue {self.where} is not open")
            return [(False, error)] * len(batch)
        outcomes: dict[int, _Outcome] = {}
        todo = list(range(len(batch)))
        while todo:
            try:
                done = self._transaction(conn, [batch[i] for i in todo])
            except _OpBroke as broke:
                culprit = todo.pop(broke.index)
                outcomes[culprit] = (False, broke.error)
                continue
            except sqlite3.Error as exc:  # BEGIN or COMMIT failed: nothing was written
                failure = queue_error(exc, self.where)
                outcomes.update((i, (False, failure)) for i in todo)
                break
            outcomes.update(zip(todo, done, strict=True))
            break
        return [outcomes[i] for i in range(len(batch))]

    def _transaction(self, conn: sqlite3.Connection, ops: Sequence[_Item]) -> list[_Outcome]:
        sync = synchronous_for(self._durability, any(op.durable for op in ops))
        if sync != self._sync:
            conn.execute(f"PRAGMA synchronous = {sync}")
            self._sync = sync
        conn.execute("BEGIN IMMEDIATE")
        done: list[_Outcome] = []
        try:
            for index, op in enumerate(ops):
                try:
                    done.append((True, op.fn(conn)))
                except UsvcError as exc:
                    done.append((False, exc))  # decided without writing: the others go on
                except sqlite3.Error as exc:
                    raise _OpBroke(index, queue_error(exc, self.where)) from exc
                except Exception as exc:
                    raise _OpBroke(index, exc) from exc
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.transactions += 1
        self.operations += len(ops)
        return done
