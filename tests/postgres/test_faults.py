"""Faults on a real PostgreSQL server, with a real worker engine draining jobs through them:

- the server restarted mid-drain (what ``pg_ctl restart -m immediate`` does: SIGQUIT, crash
  recovery at the next start), and SIGKILLed then started again;
- the network between worker and server cut by a TCP proxy written here: ``drop`` (every
  connection reset, new ones refused) and ``blackhole`` (connections accepted, nothing
  forwarded, nothing answered);
- a worker frozen (SIGSTOP) or killed (SIGKILL) inside a claim transaction.

What must hold: health turns RED during the cut and GREEN after; every job whose enqueue
was acknowledged ends Completed (nothing acknowledged is lost); a job runs more than once
only when a lease rule allows it (its handler runs at most once per counted attempt, plus
once for a start never confirmed, whose attempt is given back once per job);
the worker recovers by itself. Figures (time to RED, time to recover, runs) are printed
and written to docs/reliability.md by hand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import structlog
from pgserver import PgServer, skip_reason
from pydantic import BaseModel
from usvc_core import (
    ActionRegistry,
    EnqueueRequest,
    HealthRegistry,
    JobStatus,
    Status,
    Worker,
    WorkerConfig,
    action,
)
from usvc_core.errors import QueueError
from usvc_core.jobs import AttemptOutcome
from usvc_core.worker import QUEUE_CHECK
from usvc_postgres import PostgresQueue

# One xdist worker runs every fault test, one after the other, on one server of their own
# (they restart and kill it); the fleet test joins them, both being timing-sensitive.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres_faults")]

POLL = 0.5  #: the worker's polling interval in these tests
LEASE = 3.0  #: short leases: a claim whose answer was lost comes back quickly
COMMAND_TIMEOUT = 1.0  #: a round trip without an answer counts as a lost connection

runs: collections.Counter[str] = collections.Counter()


class _In(BaseModel):
    n: int


@action("fault_work")
async def _work(input: _In) -> dict[str, int]:
    job_id = structlog.contextvars.get_contextvars().get("job_id")  # bound by the worker
    runs[str(job_id)] += 1
    await asyncio.sleep(0.005)
    return {"n": input.n}


# --- a TCP proxy that can cut the network ---------------------------------------------------------


class Proxy:
    """127.0.0.1:``port`` -> the server. Modes: ``pass``; ``drop``: every connection reset
    (RST) and new ones reset at once; ``blackhole``: connections stay open, nothing is
    forwarded either way, new ones are accepted and never answered."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.set_mode("drop")
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "drop":
            for client, upstream in list(self._pairs):
                _reset(client)
                if upstream is not None:
                    _reset(upstream)
            self._pairs.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":
            _reset(writer)
            return
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]
        if self.mode == "blackhole":
            pair = (writer, None)
            self._pairs.add(pair)
            with contextlib.suppress(OSError):
                while await reader.read(65536):
                    pass
            self._pairs.discard(pair)
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        self._pairs.discard(pair)
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while True:
            data = await source.read(65536)
            if not data:
                break
            if self.mode == "blackhole":
                continue  # swallowed: the other side never hears of it
            if self.mode == "drop":
                break
            sink.write(data)
            await sink.drain()
        with contextlib.suppress(OSError):
            if sink.can_write_eof():
                sink.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a cut connection or a firewall would."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fault_server() -> Iterator[PgServer]:
    """A server of the fault tests' own: they restart and kill it."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PgServer(settings={"idle_in_transaction_session_timeout": "0"})
    server.init()
    server.start()
    yield server
    server.remove()


def _queue(port: int, **overrides: Any) -> PostgresQueue:
    values: dict[str, Any] = {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": port,
        "POSTGRES_COMMAND_TIMEOUT_SECONDS": COMMAND_TIMEOUT,
        "POSTGRES_CONNECT_TIMEOUT_SECONDS": COMMAND_TIMEOUT,
        "POSTGRES_POOL_SIZE": 4,
    }
    return PostgresQueue(**{**values, **overrides})


class Drain:
    """A worker engine draining ``service`` through ``queue``, watching its health, with
    a producer adding jobs throughout (acknowledged enqueues are remembered)."""

    def __init__(self, queue: PostgresQueue, producer: PostgresQueue, service: str) -> None:
        self.queue = queue
        self.producer = producer
        self.service = service
        self.health = HealthRegistry()
        registry = ActionRegistry()
        registry.add(_work)
        self.worker = Worker(
            queue,
            registry,
            WorkerConfig(
                microservice=service,
                max_concurrent=8,
                polling_interval=POLL,
                lease_seconds=LEASE,
                stats_interval=3600,
            ),
            health=self.health,
        )
        self.acknowledged: list[str] = []
        self.statuses: list[tuple[float, Status]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._producing = True

    async def __aenter__(self) -> Drain:
        self._tasks = [
            asyncio.create_task(self.worker.run()),
            asyncio.create_task(self._produce()),
            asyncio.create_task(self._watch()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._producing = False
        self.worker.request_stop()
        await asyncio.wait_for(self._tasks[0], 30)
        for task in self._tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _produce(self) -> None:
        n = 0
        while self._producing:
            try:
                job = await self.producer.enqueue(
                    EnqueueRequest({"action": "fault_work", "n": n}, self.service)
                )
            except QueueError:  # not acknowledged: may or may not be stored
                await asyncio.sleep(0.1)
                continue
            self.acknowledged.append(job.id)
            n += 1
            await asyncio.sleep(0.02)

    async def _watch(self) -> None:
        last = None
        while True:
            check = self.health.get(QUEUE_CHECK)
            status = check.status if check is not None else None
            if status is not None and status is not last:
                self.statuses.append((time.monotonic(), status))
                last = status
            await asyncio.sleep(0.02)

    def first(self, status: Status, after: float) -> float | None:
        for at, seen in self.statuses:
            if at >= after and seen is status:
                return at - after
        return None

    def green_again(self, after: float) -> float | None:
        """How long after ``after`` the queue check turned GREEN for good (0 when it already
        was by then: a worker may notice the restart and recover before the restart call
        returns); None while it is not GREEN."""
        if not self.statuses or self.statuses[-1][1] is not Status.GREEN:
            return None
        return max(0.0, self.statuses[-1][0] - after)

    def stop_producing(self) -> None:
        self._producing = False


async def _until(pred: Callable[[], Any], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not pred():
        assert time.monotonic() < deadline, f"not within {limit} s: {what}"
        await asyncio.sleep(0.05)


async def _settled(queue: PostgresQueue, service: str, ids: list[str], limit: float) -> None:
    """Every job of ``ids`` Completed (the check reads through a direct connection)."""
    deadline = time.monotonic() + limit
    while True:
        stats = await queue.stats(service)
        done = stats.counts[JobStatus.COMPLETED]
        if done >= len(ids) and stats.counts[JobStatus.READY] == 0:
            return
        assert time.monotonic() < deadline, f"{done} of {len(ids)} completed after {limit} s"
        await asyncio.sleep(0.2)


async def _verify(direct: PostgresQueue, drain: Drain) -> dict[str, Any]:
    """Nothing acknowledged lost; no job ran more often than its attempts allow."""
    await _settled(direct, drain.service, drain.acknowledged, 60)
    jobs = [await direct.get(job_id) for job_id in drain.acknowledged]
    lost = [i for i, job in zip(drain.acknowledged, jobs, strict=True) if job is None]
    assert lost == [], f"acknowledged jobs lost: {lost[:5]}"
    unfinished = [j.id for j in jobs if j is not None and j.status is not JobStatus.COMPLETED]
    assert unfinished == []
    # A start whose claimer never confirmed it (no renewal, no outcome recorded) gets its
    # attempt back once per job (``not_started``): its handler may have run all the same.
    over = [
        j.id
        for j in jobs
        if j is not None and runs[j.id] > j.attempts + _given_back(j.attempt_history)
    ]
    assert over == [], "a handler ran more often than the attempts its job counted"
    twice = sum(1 for j in jobs if j is not None and runs[j.id] > 1)
    return {
        "jobs": len(jobs),
        "ran_twice": twice,
        "attempts_max": max(j.attempts for j in jobs if j),
    }


@pytest.fixture
async def direct(fault_server: PgServer) -> AsyncIterator[PostgresQueue]:
    queue = _queue(fault_server.port, POSTGRES_LISTEN="off", POSTGRES_COMMAND_TIMEOUT_SECONDS=30)
    await _open_eventually(queue)
    yield queue
    await queue.close()


async def _open_eventually(queue: PostgresQueue) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await queue.open()
            return
        except QueueError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)


def _given_back(history: Any) -> int:
    return sum(1 for a in history if a.outcome is AttemptOutcome.NOT_STARTED)


def _report(name: str, figures: dict[str, Any]) -> None:
    print(f"fault figures {name}: {json.dumps(figures)}")


# --- the server goes away -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["restart_immediate", "sigkill_and_start"])
async def test_the_server_restarted_mid_drain(
    fault_server: PgServer, direct: PostgresQueue, how: str
) -> None:
    service = f"restart-{uuid.uuid4().hex[:8]}"
    queue = _queue(fault_server.port)
    producer = _queue(fault_server.port, POSTGRES_LISTEN="off")
    await queue.open()
    await producer.open()
    try:
        async with Drain(queue, producer, service) as drain:
            await _until(lambda: len(drain.acknowledged) >= 50, 30, "50 jobs enqueued")
            cut = time.monotonic()
            await asyncio.to_thread(
                fault_server.restart if how == "restart_immediate" else _kill_and_start,
                *(() if how == "restart_immediate" else (fault_server,)),
            )
            back = time.monotonic()
            await _until(
                lambda: drain.green_again(back) is not None and len(drain.acknowledged) >= 150,
                60,
                "GREEN again and 100 more jobs",
            )
            drain.stop_producing()
            await _settled(direct, service, drain.acknowledged, 60)
            recovered = drain.green_again(back)
        figures = await _verify(direct, drain)
        figures.update(
            outage_s=round(back - cut, 2),
            worst=_worst(drain.statuses),
            green_again_after_server_back_s=None if recovered is None else round(recovered, 2),
        )
        _report(how, figures)
    finally:
        await queue.close()
        await producer.close()


def _worst(statuses: list[tuple[float, Status]]) -> str:
    seen = {status for _, status in statuses}
    return next(s.name for s in (Status.RED, Status.YELLOW, Status.GREEN) if s in seen)


def _kill_and_start(server: PgServer) -> None:
    server.kill()
    time.sleep(1.0)
    server.start()


# --- the network is cut ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["drop", "blackhole"])
async def test_a_network_cut_turns_health_red_and_the_worker_recovers(
    fault_server: PgServer, direct: PostgresQueue, mode: str
) -> None:
    proxy = Proxy(fault_server.port)
    await proxy.start()
    service = f"cut-{mode}-{uuid.uuid4().hex[:8]}"
    queue = _queue(proxy.port)
    producer = _queue(fault_server.port, POSTGRES_LISTEN="off")  # producers elsewhere
    await queue.open()
    await producer.open()
    try:
        async with Drain(queue, producer, service) as drain:
            await _until(lambda: len(drain.acknowledged) >= 50, 30, "50 jobs enqueued")
            cut = time.monotonic()
            proxy.set_mode(mode)
            await _until(lambda: drain.first(Status.RED, cut) is not None, 30, "health RED")
            red = drain.first(Status.RED, cut)
            check = drain.health.get(QUEUE_CHECK)
            assert check is not None
            assert "unavailable" in str(check.details.get("error"))
            await asyncio.sleep(1.0)
            healed = time.monotonic()
            proxy.set_mode("pass")
            await _until(lambda: drain.green_again(healed) is not None, 60, "GREEN again")
            green = drain.green_again(healed)
            await _until(lambda: len(drain.acknowledged) >= 150, 60, "100 more jobs")
            drain.stop_producing()
            await _settled(direct, service, drain.acknowledged, 60)
        figures = await _verify(direct, drain)
        figures.update(
            red_after_cut_s=None if red is None else round(red, 2),
            green_after_heal_s=None if green is None else round(green, 2),
            polling_interval_s=POLL,
            command_timeout_s=COMMAND_TIMEOUT,
        )
        _report(f"network_{mode}", figures)
    finally:
        await queue.close()
        await producer.close()
        await proxy.stop()


# --- a worker frozen or killed inside a claim transaction -----------------------------------------

_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import asyncpg
    from usvc_postgres import PostgresQueue
    from usvc_postgres.connection import server_settings

    async def main() -> None:
        queue = PostgresQueue(POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=int(sys.argv[1]),
                              POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS=float(sys.argv[3]))
        s = queue.settings
        conn = await asyncpg.connect(**s.connect_kwargs(), server_settings=server_settings(s))
        tx = conn.transaction()
        await tx.start()
        # What a limited claim does first: the service's claim lock, then its Ready rows.
        await conn.execute(queue.sql.claim_lock, f"{queue.sql.table}:{sys.argv[2]}")
        await conn.fetch(queue.sql.due_of_others, sys.argv[2], [], 100)
        print("holding", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", ["SIGSTOP", "SIGKILL"])
async def test_a_worker_stopped_inside_a_claim_transaction_releases_its_locks(
    fault_server: PgServer, direct: PostgresQueue, how: str
) -> None:
    """The adapter's connections carry idle_in_transaction_session_timeout (here 2 s): a
    frozen worker's session is ended by the server, releasing the claim lock and the row
    locks; a killed one's at once (its socket closes). Other workers then claim."""
    service = f"frozen-{uuid.uuid4().hex[:8]}"
    await direct.enqueue_many(
        [EnqueueRequest({"action": "fault_work", "n": n}, service) for n in range(5)]
    )
    holder = subprocess.Popen(  # noqa: ASYNC220 (a plain child; its pipe is read in a thread)
        [sys.executable, "-c", _HOLDER, str(fault_server.port), service, "2"],
        stdout=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 30)
        assert line.strip() == b"holding"
        # Rows locked FOR UPDATE by the holder: an unlimited claim skips them.
        assert await direct.claim(service, "other", 5, 30.0) == []
        holder.send_signal(signal.SIGSTOP if how == "SIGSTOP" else signal.SIGKILL)
        stopped = time.monotonic()
        claimed = await direct.claim(service, "other", 5, 30.0, max_running={"fault_work": 5})
        while not claimed:
            assert time.monotonic() - stopped < 30, "locks still held after 30 s"
            await asyncio.sleep(0.1)
            claimed = await direct.claim(service, "other", 5, 30.0, max_running={"fault_work": 5})
        waited = time.monotonic() - stopped
        assert len(claimed) == 5
        _report(f"claim_transaction_{how}", {"released_after_s": round(waited, 2), "bound_s": 2})
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.send_signal(signal.SIGKILL)
            holder.send_signal(signal.SIGCONT)
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
