"""One SQLite connection on its own thread, and the group-commit writer in front of it.

Why not aiosqlite: it runs every statement as its own hop to its thread (about 60-110 us
here, far more than the SQL), and its public API cannot run a whole transaction
(``BEGIN IMMEDIATE``, several statements, ``COMMIT``) in one hop. Group commit needs
exactly that, so this module keeps the same design (one thread owns the connection, the
event loop waits on futures) with a function-per-hop interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from queue import SimpleQueue
from typing import Any, TypeVar

from usvc_core.errors import QueueError, QueueUnavailableError, UsvcError

__all__ = ["ConnectionThread", "Durability", "GroupCommitWriter", "synchronous_for"]

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]


class Durability(StrEnum):
    """How much of the queue's state a power loss or OS crash may take back.

    A crash of a worker process alone never loses a committed transaction in either mode
    (WAL); these modes only differ when the whole machine stops.
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
    """The ``PRAGMA synchronous`` level for one transaction."""
    return "FULL" if durable and durability is Durability.FULL else "NORMAL"


def queue_error(exc: sqlite3.Error, where: str) -> QueueError:
    """The kit's error for an SQLite failure; busy and I/O errors are transient."""
    if isinstance(exc, sqlite3.OperationalError):
        return QueueUnavailableError(f"SQLite queue {where}: {exc}")
    return QueueError(f"SQLite queue {where}: {type(exc).__name__}: {exc}")


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return  # the caller was cancelled; the work happened anyway
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class ConnectionThread:
    """Owns one ``sqlite3`` connection and runs functions on it, one at a time, in order."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], where: str) -> None:
        self._connect = connect
        self.where = where
        self._inbox: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"usvc-sqlite {where}")
        # A daemon thread: a queue nobody closed must not keep the interpreter alive.
        self._thread.daemon = True
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _serve(self) -> None:
        while (work := self._inbox.get()) is not None:
            work()

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection; only for functions running on this thread."""
        if self._conn is None:
            raise QueueUnavailableError(f"SQLite queue {self.where} is not open")
        return self._conn

    def post(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the thread (it must not raise)."""
        if self._closed:
            raise QueueUnavailableError(f"SQLite queue {self.where} is closed")
        self._inbox.put(work)

    def _submit(self, thunk: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def work() -> None:
            value: Any
            try:
                ok, value = True, thunk()
            except sqlite3.Error as exc:
                ok, value = False, queue_error(exc, self.where)
            except BaseException as exc:
                ok, value = False, exc
            _call_back(loop, _settle, fut, ok, value)

        self._inbox.put(work)
        return fut

    async def call(self, fn: Work[T]) -> T:
        """Run ``fn(conn)`` on the thread: one hop. sqlite3 errors become QueueErrors."""
        if self._closed:
            raise QueueUnavailableError(f"SQLite queue {self.where} is closed")
        return await self._submit(lambda: fn(self.conn))

    async def open(self) -> None:
        """Start the thread and connect on it."""
        self._thread.start()

        def connect() -> None:
            self._conn = self._connect()

        try:
            await self._submit(connect)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish the work already queued, close the connection, end the thread."""
        if self._closed:
            return
        self._closed = True
        if not self._thread.is_alive():
            return

        def disconnect() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        done = self._submit(disconnect)
        self._inbox.put(None)
        await done


def _call_back(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    # RuntimeError: the event loop is gone; nobody waits for this result any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    durable: bool
    future: asyncio.Future[Any]


class _OpBroke(Exception):  # noqa: N818 - internal signal
    """An operation hit an SQLite error: its transaction is rolled back."""

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error


class GroupCommitWriter:
    """Runs write operations in shared transactions: one hop and one commit for all the
    operations submitted while the previous transaction was running (group commit).

    Each operation is a function of the connection that either returns its result or raises
    a :class:`~usvc_core.errors.UsvcError` after writing nothing (lease lost, duplicate
    key); either way the others in its transaction go on. An operation that hits an SQLite
    error is failed alone: the transaction is rolled back and run again without it. Each
    caller is released when the transaction holding its operation has committed, with the
    durability its operation asked for.
    """

    def __init__(self, thread: ConnectionThread, durability: Durability) -> None:
        self._thread = thread
        self._durability = durability
        self._pending: list[_Op] = []
        self._busy = False
        self._scheduled = False
        self._sync = ""  # the connection's current PRAGMA synchronous (thread side)
        self._outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.transactions = 0  #: committed transactions (for tests and benchmarks)
        self.operations = 0  #: operations they carried

    async def run(self, fn: Work[T], *, durable: bool) -> T:
        """Submit one operation and wait until its transaction committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Op(fn, durable, fut))
        self._outstanding += 1
        self._idle.clear()
        if not self._busy and not self._scheduled:
            # Wait one turn of the loop: operations submitted by other tasks that are
            # already runnable join this transaction.
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return await fut

    async def drain(self) -> None:
        """Wait until every submitted operation has been committed or failed."""
        await self._idle.wait()

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._busy or not self._pending:
            return
        batch, self._pending = self._pending, []
        self._busy = True
        loop = asyncio.get_running_loop()
        try:
            self._thread.post(lambda: self._run_on_thread(loop, batch))
        except QueueError as exc:
            self._finish([(False, exc)] * len(batch), batch)

    # --- on the connection thread ------------------------------------------------------------

    def _run_on_thread(self, loop: asyncio.AbstractEventLoop, batch: list[_Op]) -> None:
        outcomes: list[tuple[bool, Any]]
        try:
            outcomes = self._run_isolated(self._thread.conn, batch)
        except BaseException as exc:
            outcomes = [(False, exc)] * len(batch)
        _call_back(loop, self._finish, outcomes, batch)

    def _run_isolated(
        self, conn: sqlite3.Connection, batch: Sequence[_Op]
    ) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one transaction; an operation that breaks it fails alone."""
        outcomes: dict[int, tuple[bool, Any]] = {}
        todo = list(range(len(batch)))
        while todo:
            try:
                done = self._transaction(conn, [batch[i] for i in todo])
            except _OpBroke as broke:
                culprit = todo.pop(broke.index)
                outcomes[culprit] = (False, broke.error)
                continue
            except sqlite3.Error as exc:  # BEGIN or COMMIT failed: nothing was written
                error = queue_error(exc, self._thread.where)
                outcomes.update((i, (False, error)) for i in todo)
                break
            outcomes.update(zip(todo, done, strict=True))
            break
        return [outcomes[i] for i in range(len(batch))]

    def _transaction(self, conn: sqlite3.Connection, ops: Sequence[_Op]) -> list[tuple[bool, Any]]:
        sync = synchronous_for(self._durability, any(op.durable for op in ops))
        if sync != self._sync:
            conn.execute(f"PRAGMA synchronous = {sync}")
            self._sync = sync
        conn.execute("BEGIN IMMEDIATE")
        done: list[tuple[bool, Any]] = []
        try:
            for index, op in enumerate(ops):
                try:
                    done.append((True, op.fn(conn)))
                except UsvcError as exc:
                    done.append((False, exc))  # decided without writing: the others go on
                except sqlite3.Error as exc:
                    raise _OpBroke(index, queue_error(exc, self._thread.where)) from exc
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

    # --- back on the event loop ---------------------------------------------------------------

    def _finish(self, outcomes: Sequence[tuple[bool, Any]], batch: Sequence[_Op]) -> None:
        for op, (ok, value) in zip(batch, outcomes, strict=True):
            _settle(op.future, ok, value)
        self._busy = False
        self._outstanding -= len(batch)
        if not self._outstanding:
            self._idle.set()
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)
