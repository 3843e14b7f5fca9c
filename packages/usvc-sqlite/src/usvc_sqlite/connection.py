"""One SQLite connection written with group commit, one thread hop per transaction; the
fsyncs on a helper thread, the reads on a thread of their own.

Writes submitted while a transaction runs wait on the event loop and go together, in one
transaction, to the writer thread as soon as it is free (group commit: the busier the
worker, the larger the groups). The loop itself runs no SQL: a transaction of this queue
is tens of microseconds of C per job, which SQLite runs with the GIL released, so the
loop's Python (the jobs, their logs and metrics) and the statements overlap on two
cores. The hop is per transaction, not per statement: a thread that owned the connection
and took each statement (aiosqlite's design, and this module's first one) made the two
threads take turns at every statement boundary, and lost to running the statements on
the loop; one hop per group is the prototype's design (``bench/sqlite_prototype.py``)
and drains faster than both (docs/benchmarks.md).

* **fsync.** Transactions commit with ``synchronous=NORMAL`` (written to the WAL, not yet
  flushed). For a durable write the helper then flushes the WAL file (``fdatasync``) and
  releases the callers. One flush covers every commit made before it started (group
  commit), and the writer runs the next group meanwhile. SQLite offers no such
  "commit now, sync later" call, hence our own flush of its WAL file, which is what
  ``synchronous=FULL`` itself does at commit.
* **Another process's write lock.** The writer waits for it up to ``busy_timeout`` (with
  the GIL released); the loop goes on meanwhile, gathering the next group.
* **Reads** (``get``, ``stats``, ``ping``) run on a second connection and a thread of
  their own, the reader: a count over a large table must stall neither the loop nor the
  helper's fsyncs (the durable completions waiting on them).
* **Checkpoints**, which copy the WAL back into the database with two fsyncs, run on the
  reader's connection and thread instead of inside a commit; the writer only copies the
  last few frames now and then, so that the WAL can start over (see ``_checkpoint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

from usvc_core.errors import QueueError, QueueUnavailableError, UsvcError

__all__ = ["Durability", "SqliteConnection", "synchronous_for"]

T = TypeVar("T")
R = TypeVar("R")
Work = Callable[[sqlite3.Connection], T]
_Outcome = tuple[bool, Any]  # (ok, result or exception)
_Settled = list[tuple["asyncio.Future[Any]", _Outcome]]

_CHECKPOINT_EVERY = 64  # write transactions between two checkpoints
_CHECKPOINT_FRAMES = 1000  # SQLite's own auto-checkpoint point: a WAL of 1,000 pages


class Durability(StrEnum):
    """How much of the queue's state a power loss or OS crash may take back.

    A crash of a worker process alone never loses a committed transaction in either mode
    (WAL); the modes differ only when the whole machine stops.
    """

    #: Enqueues and recorded outcomes (complete, fail, retry, release) are on disk (the
    #: WAL flushed with an fsync) before the call returns. Claims, starts, lease renewals,
    #: reclaims and purges reach the disk with the next fsync: a power loss can only undo
    #: them for workers it killed as well.
    FULL = "full"
    #: Nothing waits for the disk: a power loss may undo the last transactions, including
    #: enqueues and outcomes that had returned.
    NORMAL = "normal"


def synchronous_for(durability: Durability, durable: bool) -> str:
    """The ``PRAGMA synchronous`` level that makes a transaction holding a ``durable``
    operation as safe as this queue makes it (the benchmark's floor commits this way)."""
    return "FULL" if durable and durability is Durability.FULL else "NORMAL"


def queue_error(exc: sqlite3.Error, where: str) -> QueueError:
    """The kit's error for an SQLite failure; busy and I/O errors are transient."""
    if isinstance(exc, sqlite3.OperationalError):
        return QueueUnavailableError(f"SQLite queue {where}: {exc}")
    return QueueError(f"SQLite queue {where}: {type(exc).__name__}: {exc}")


class _Item:
    """One piece of work: a write ``fn(conn)`` that joins a group transaction, or a read
    ``fn(conn)`` that runs on the reader's own connection.

    A merged write (:meth:`SqliteConnection.write_row`) has one caller per row: ``futures``
    lists them, and ``fn`` returns one outcome per row."""

    __slots__ = ("durable", "fn", "future", "futures", "write")

    def __init__(
        self, fn: Callable[..., Any], future: asyncio.Future[Any], *, write: bool, durable: bool
    ) -> None:
        self.fn = fn
        self.future = future
        self.futures: list[asyncio.Future[Any]] | None = None
        self.write = write
        self.durable = durable


def _callers(items: Sequence[_Item], outcomes: Sequence[_Outcome]) -> _Settled:
    """Each caller with its outcome (a merged write's callers each get their row's)."""
    settled: _Settled = []
    for item, (ok, value) in zip(items, outcomes, strict=True):
        if item.futures is None:
            settled.append((item.future, (ok, value)))
        elif ok:
            settled.extend(zip(item.futures, value, strict=True))
        else:
            settled.extend((fut, (False, value)) for fut in item.futures)
    return settled


class _OpBroke(Exception):  # noqa: N818 - internal signal
    """An operation hit an SQLite error: its transaction is rolled back."""

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error


class _Fsync:
    """Helper work: flush the WAL, then release these callers of durable writes, all on
    ``loop`` (the one their round ran for)."""

    __slots__ = ("loop", "settled")

    def __init__(self, loop: asyncio.AbstractEventLoop, settled: _Settled) -> None:
        self.loop = loop
        self.settled = settled


_HelperWork = Callable[[], None] | _Fsync | None  # None: stop
_ThreadWork = Callable[[], None] | None  # work for the reader or the writer; None: stop


def _settle_all(settled: _Settled) -> None:
    for fut, (ok, value) in settled:
        if fut.done():
            continue  # the caller was cancelled; the work happened anyway
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class SqliteConnection:
    """Owns the queue's connections and threads: writes in group transactions on the
    writer thread, fsyncs on the helper, reads on the reader.

    Each write operation is a function of the connection that returns its result, or
    raises a :class:`~usvc_core.errors.UsvcError` after writing nothing (lease lost,
    duplicate key); either way the other operations of its transaction go on. An operation
    that hits an SQLite error fails alone: the transaction is rolled back and run again
    without it. A caller is released once the transaction holding its operation committed
    with the durability it asked for.

    ``connect`` opens a connection (it runs on the helper or the reader thread and may
    wait for locks); it is called twice, for the writer and for the reader.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        where: str,
        durability: Durability,
        *,
        wal_path: str,
        busy_timeout: float = 5.0,
    ) -> None:
        self._connect = connect
        self.where = where
        self._wal_path = wal_path
        self._durability = durability
        self._busy_ms = int(busy_timeout * 1000)
        self._helper_inbox: SimpleQueue[_HelperWork] = SimpleQueue()
        self._helper = threading.Thread(target=self._serve, name=f"usvc-sqlite {where}")
        # A daemon thread: a queue nobody closed must not keep the interpreter alive.
        self._helper.daemon = True
        self._reader_inbox: SimpleQueue[_ThreadWork] = SimpleQueue()
        self._reader_thread = threading.Thread(
            target=_serve_inbox,
            args=(self._reader_inbox,),
            name=f"usvc-sqlite reads {where}",
            daemon=True,
        )
        self._writer_inbox: SimpleQueue[_ThreadWork] = SimpleQueue()
        self._writer_thread = threading.Thread(
            target=_serve_inbox,
            args=(self._writer_inbox,),
            name=f"usvc-sqlite writes {where}",
            daemon=True,
        )
        self._in_flight = False  # a group transaction on the writer thread (loop only)
        self._waiting: list[_Item] = []  # writes for the next group (loop only)
        self._round_idle: asyncio.Future[None] | None = None  # close() waits for the last
        self._outbox: list[_Item] = []
        # The next group's merged writes (write_row) by function and durability: their
        # callers and their rows.
        self._merged: dict[
            tuple[Callable[..., Any], bool],
            tuple[list[asyncio.Future[Any]], list[Any], asyncio.AbstractEventLoop],
        ] = {}
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # the reader thread's own
        self._wal_fd: int | None = None  # the helper's, for the fsync of durable writes
        self._checkpointed_at = 0  # self.transactions when the last checkpoint was asked for
        self._wal_restart_due = False  # the WAL is long: the writer finishes a checkpoint
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        #: Why the store is broken (a failed fsync), until reopened; see :meth:`_flush_wal`.
        self.broken: str | None = None
        self.transactions = 0  #: write transactions committed
        self.operations = 0  #: write operations they carried

    # --- on the event loop -----------------------------------------------------------------

    def _enqueue(self, fn: Callable[..., Any], *, write: bool, durable: bool) -> _Item:
        if self._closed:
            raise QueueUnavailableError(f"SQLite queue {self.where} is closed")
        if self.broken is not None:
            raise QueueUnavailableError(self.broken)
        loop = asyncio.get_running_loop()
        item = _Item(fn, loop.create_future(), write=write, durable=durable)
        if not self._outbox:
            loop.call_soon(self._flush)
        self._outbox.append(item)
        return item

    def _submit(self, fn: Callable[..., T], *, write: bool, durable: bool) -> asyncio.Future[T]:
        return self._enqueue(fn, write=write, durable=durable).future

    def write_row(
        self,
        fn_many: Callable[[sqlite3.Connection, list[R]], list[_Outcome]],
        row: R,
        *,
        durable: bool,
    ) -> asyncio.Future[Any]:
        """Add ``row`` to the next group's one call of ``fn_many(conn, rows)``, which returns
        an ``(ok, result or exception)`` per row; the future gets this row's. The rows
        gathered until the group goes to the writer are one operation of its transaction
        (one call instead of one per row); an SQLite error in it fails all of them."""
        merged = self._merged.get((fn_many, durable))
        if merged is None:
            rows: list[Any] = []
            item = self._enqueue(lambda conn: fn_many(conn, rows), write=True, durable=durable)
            item.futures = []
            merged = self._merged[(fn_many, durable)] = (item.futures, rows, item.future.get_loop())
        futures, rows, loop = merged
        # The group's loop (a round's callers are all on it): no loop lookup per row.
        fut: asyncio.Future[Any] = loop.create_future()
        futures.append(fut)
        rows.append(row)
        return fut

    def _flush(self) -> None:
        items, self._outbox = self._outbox, []
        writes = [i for i in items if i.write]
        reads = [i for i in items if not i.write]
        if writes:
            self._write_round(writes)
        for item in reads:
            self._on_reader(item.future, functools.partial(self._read, item.fn))

    def _write_round(self, items: list[_Item]) -> None:
        """Send ``items`` to the writer as one transaction, or keep them for the next one
        while a transaction runs there. Callers of durable writes are released by the
        helper's next flush, the others by :meth:`_round_done`."""
        if self._in_flight:
            self._waiting.extend(items)
            return
        self._in_flight = True
        self._merged = {}
        loop = asyncio.get_running_loop()

        def round_on_writer() -> None:
            now: tuple[list[_Item], list[_Outcome]] = ([], [])
            later: tuple[list[_Item], list[_Outcome]] = ([], [])
            try:
                outcomes = self._run_writes(items)
                for item, outcome in zip(items, outcomes, strict=True):
                    group = later if self._needs_sync(item) else now
                    group[0].append(item)
                    group[1].append(outcome)
                settled, synced = _callers(*now), _callers(*later)
            except BaseException as exc:
                # A bug must neither end this thread nor leave callers waiting forever.
                settled, synced = _callers(items, [(False, exc)] * len(items)), []
            if synced:
                self._helper_inbox.put(_Fsync(loop, synced))
            if self._wal_restart_due:
                self._finish_checkpoint()
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(self._round_done, settled)

        self._writer_inbox.put(round_on_writer)

    def _round_done(self, settled: _Settled) -> None:
        """On the loop, once the writer committed: release ``settled``, send the next group."""
        self._in_flight = False
        _settle_all(settled)
        self._maybe_checkpoint()
        if self._waiting:
            items, self._waiting = self._waiting, []
            self._write_round(items)
        elif self._round_idle is not None and not self._round_idle.done():
            self._round_idle.set_result(None)

    def _want_wal_restart(self) -> None:
        self._wal_restart_due = True

    def _finish_checkpoint(self) -> None:
        """Copy the last frames of the WAL between two of this process's transactions (on
        the writer thread).

        The reader's passive checkpoints copy the bulk, but while the writer keeps writing
        they never catch up with the newest frames, and SQLite starts the WAL over only at
        a transaction that begins with every frame copied: the WAL would grow without end.
        Run here, right after a commit, the checkpoint copies the few frames written since
        (a millisecond or so, two fsyncs included) and the next transaction starts the WAL
        over. Never waits for a lock: a passive checkpoint does not."""
        self._wal_restart_due = False
        if self._writer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _maybe_checkpoint(self) -> None:
        if self.transactions - self._checkpointed_at >= _CHECKPOINT_EVERY:
            self._checkpointed_at = self.transactions
            self._reader_inbox.put(self._checkpoint)

    def _needs_sync(self, item: _Item) -> bool:
        return item.durable and self._durability is Durability.FULL

    def _on_helper(self, fut: asyncio.Future[Any], fn: Callable[[], Any]) -> None:
        self._helper_inbox.put(self._settling(fut, fn))

    def _on_reader(self, fut: asyncio.Future[Any], fn: Callable[[], Any]) -> None:
        self._reader_inbox.put(self._settling(fut, fn))

    def _settling(self, fut: asyncio.Future[Any], fn: Callable[[], Any]) -> Callable[[], None]:
        """``fn`` as thread work that hands its outcome to ``fut``."""

        def run() -> None:
            try:
                outcome: _Outcome = (True, fn())
            except sqlite3.Error as exc:
                outcome = (False, self._failure(exc))
            except BaseException as exc:
                outcome = (False, exc)
            self._release([(fut, outcome)])

        return run

    async def call(self, fn: Work[T]) -> T:
        """Run ``fn(conn)`` on the reader's connection, outside any transaction."""
        return await self._submit(fn, write=False, durable=False)

    async def write(self, fn: Work[T], *, durable: bool) -> T:
        """Run ``fn(conn)`` in the next group transaction; return once it committed (and,
        for a durable write in ``full`` mode, once the WAL is on disk)."""
        return await self._submit(fn, write=True, durable=durable)

    async def open(self) -> None:
        """Start the threads and connect on the helper (may wait for another process)."""
        self._loop = asyncio.get_running_loop()
        self._helper.start()
        self._reader_thread.start()
        self._writer_thread.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_helper(fut, self._open_writer)
        try:
            await fut
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Finish the work already submitted, close the connections, end the threads."""
        if self._closed:
            return
        self._closed = True
        if not self._helper.is_alive():
            return
        self._flush()
        loop = asyncio.get_running_loop()
        if self._in_flight:
            self._round_idle = loop.create_future()
            await self._round_idle
        self._writer_inbox.put(None)
        # Queued after every read submitted so far, and on the helper after every round
        # and fsync: those finish first.
        reads_done: asyncio.Future[None] = loop.create_future()
        self._on_reader(reads_done, self._close_reader)
        self._reader_inbox.put(None)
        with contextlib.suppress(Exception):  # a failed close of the reader: go on
            await reads_done
        fut: asyncio.Future[None] = loop.create_future()
        self._on_helper(fut, self._disconnect)
        self._helper_inbox.put(None)
        await fut

    # --- on the helper, reader and writer threads ----------------------------------------------

    def _open_writer(self) -> None:
        conn = self._connect()
        # The writer thread waits for other processes' locks, and commits without an fsync
        # (the helper makes durable writes durable; see the module doc).
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints (copying the WAL back into the database, with two fsyncs) run on the
        # reader thread, not inside a commit (see _checkpoint).
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._writer = conn

    def _read(self, fn: Work[T]) -> T:
        return fn(self._reader_conn())

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            if self._writer is None:
                raise QueueUnavailableError(f"SQLite queue {self.where} is not open")
            self._reader = self._connect()
        return self._reader

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _disconnect(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def _serve(self) -> None:
        pending: list[_HelperWork] = []  # work taken from the inbox early, in order
        while True:
            job = pending.pop(0) if pending else self._helper_inbox.get()
            if job is None:
                return
            if isinstance(job, _Fsync):
                pending.extend(self._synced(job))
            else:
                job()

    def _synced(self, first: _Fsync) -> list[_HelperWork]:
        """Flush the WAL, then release these callers and those of every fsync queued
        meanwhile (one flush covers every commit made before it). Returns the work it took
        from the inbox that is not an fsync, which must run next."""
        # Grouped by the loop each round named: no loop lookup per caller.
        by_loop: dict[asyncio.AbstractEventLoop, _Settled] = {first.loop: first.settled}
        following: list[_HelperWork] = []
        while not following:
            try:
                job = self._helper_inbox.get_nowait()
            except Empty:
                break
            if isinstance(job, _Fsync):
                group = by_loop.get(job.loop)
                if group is None:
                    by_loop[job.loop] = job.settled
                else:
                    group.extend(job.settled)
            else:
                following.append(job)  # a round, a read or the stop keeps its place
        try:
            self._flush_wal()
        except QueueUnavailableError as failed:
            by_loop = {
                loop: [(fut, (False, failed)) for fut, _ in group]
                for loop, group in by_loop.items()
            }
        for loop, group in by_loop.items():
            # RuntimeError: that event loop is gone; nobody waits for these results.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, group)
        return following

    def _failure(self, exc: sqlite3.Error) -> QueueError:
        """The kit's error for ``exc``; an I/O error from SQLite itself (its own fsync in a
        checkpoint, a write or read the disk refused) breaks the store like a failed flush
        of ours (see :meth:`_flush_wal`): what the disk holds is no longer known."""
        if self.broken is None and getattr(exc, "sqlite_errorname", "").startswith("SQLITE_IOERR"):
            self.broken = (
                f"SQLite queue {self.where}: {exc} ({exc.sqlite_errorname}); nothing is "
                "acknowledged until the queue is reopened"
            )
        if self.broken is not None:
            return QueueUnavailableError(self.broken)
        return queue_error(exc, self.where)

    def _flush_wal(self) -> None:
        """Flush the WAL; after one failed flush, refuse every later one until reopened.

        When fsync fails, Linux has already dropped the dirty pages it could not write
        (they are clean now) and reports the error once: a later fsync succeeds with
        those commits missing from the disk, and SQLite's WAL checksums then end the log
        before them at recovery, taking later commits too ("fsyncgate", PostgreSQL 2018).
        So nothing written since may be acknowledged: the store is broken until the
        queue is closed and opened again (SQLite recovers from what the disk holds)."""
        if self.broken is not None:
            raise QueueUnavailableError(self.broken)
        try:
            self._sync_wal()
        except OSError as exc:
            self.broken = (
                f"SQLite queue {self.where}: fsync failed: {exc}; nothing is acknowledged "
                "until the queue is reopened"
            )
            raise QueueUnavailableError(self.broken) from exc

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database from the reader's connection (PASSIVE: the
        writer goes on meanwhile), so that commits need not: SQLite's auto-checkpoint would
        run inside one. Once the WAL holds SQLite's threshold of pages, the writer finishes
        the job between two transactions (see :meth:`_finish_checkpoint`)."""
        try:
            conn = self._reader_conn()
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        except Exception:  # whatever it is: the reader thread must go on serving reads
            return  # the next one catches up; a failed checkpoint loses nothing
        if frames >= _CHECKPOINT_FRAMES and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                self._loop.call_soon_threadsafe(self._want_wal_restart)

    def _sync_wal(self) -> None:
        if self._wal_fd is None:
            # Windows' fsync needs a handle open for writing; POSIX flushes any descriptor.
            mode = os.O_RDWR if os.name == "nt" else os.O_RDONLY
            self._wal_fd = os.open(self._wal_path, mode | getattr(os, "O_CLOEXEC", 0))
        (getattr(os, "fdatasync", None) or os.fsync)(self._wal_fd)

    @staticmethod
    def _release(settled: _Settled) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, _Settled] = {}
        for fut, outcome in settled:
            by_loop.setdefault(fut.get_loop(), []).append((fut, outcome))
        for loop, group in by_loop.items():
            # RuntimeError: that event loop is gone; nobody waits for these results.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, group)

    # --- on the writer thread -------------------------------------------------------------------

    def _run_writes(self, batch: Sequence[_Item]) -> list[_Outcome]:
        """Run ``batch`` in one transaction; an operation that breaks it fails alone. Waits
        up to ``busy_timeout`` for another process's write lock."""
        conn = self._writer
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
                failure = self._failure(exc)
                outcomes.update((i, (False, failure)) for i in todo)
                break
            outcomes.update(zip(todo, done, strict=True))
            break
        return [outcomes[i] for i in range(len(batch))]

    def _transaction(self, conn: sqlite3.Connection, ops: Sequence[_Item]) -> list[_Outcome]:
        conn.execute("BEGIN IMMEDIATE")
        done: list[_Outcome] = []
        try:
            for index, op in enumerate(ops):
                try:
                    done.append((True, op.fn(conn)))
                except UsvcError as exc:
                    done.append((False, exc))  # decided without writing: the others go on
                except sqlite3.Error as exc:
                    raise _OpBroke(index, self._failure(exc)) from exc
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


def _serve_inbox(inbox: SimpleQueue[_ThreadWork]) -> None:
    """The reader's and the writer's thread: run each piece of work in turn until None."""
    while (job := inbox.get()) is not None:
        job()
