"""The ports: what the core needs from the outside world, as ``typing.Protocol``s.

Adapters implement them (``usvc-testing``: the in-memory queue; ``usvc-sqlite``: the SQLite
queue; ``usvc-postgres``: the PostgreSQL queue; ``usvc-oracle``: the Oracle queue;
``usvc-http``: Prometheus metrics and the HTTP surface; ``usvc-mongo``: the service
registry) and are passed to :class:`usvc_core.Application` through its
constructor, or found by entry point from the settings alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from usvc_core.health import Status
from usvc_core.jobs import Job, JobStatus
from usvc_core.lazy_names import lazy_names

if TYPE_CHECKING:
    from usvc_core.admin_records import JobFilter, JobPage, MinuteActivity, QueueActivity
    from usvc_core.service_registry import ActionSchema, InstanceInfo, ServiceDescription

__all__ = [
    "FIND_LIMIT",
    "GONE_AFTER_HEARTBEATS",
    "ActionSchema",
    "Clock",
    "EnqueueRequest",
    "FleetAdmin",
    "InstanceInfo",
    "JobFilter",
    "JobPage",
    "JobQueue",
    "LeaseRenewal",
    "Metrics",
    "MinuteActivity",
    "QueueActivity",
    "QueueAdmin",
    "QueueStats",
    "ReclaimResult",
    "ServiceDescription",
    "ServiceRegistry",
    "StoreClock",
    "Surface",
    "WorkerRecord",
]

# Created on first use (PEP 562): the service registry's records (only a service with a
# registry configured needs them) and the operator port's (only the CLI, the admin API and
# the dashboard make them; an idle worker never does).
__getattr__, __dir__ = lazy_names(
    __name__,
    {
        **dict.fromkeys(
            ("ActionSchema", "InstanceInfo", "ServiceDescription"), "usvc_core.service_registry"
        ),
        **dict.fromkeys(
            ("JobFilter", "JobPage", "MinuteActivity", "QueueActivity"), "usvc_core.admin_records"
        ),
    },
)


@runtime_checkable
class Clock(Protocol):
    """Time, injectable so that leases, backoff and breakers are testable without sleeping."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations)."""
        ...

    def now(self) -> datetime:
        """The current UTC time, timezone-aware (for timestamps, never for ownership)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...


@runtime_checkable
class StoreClock(Protocol):
    """Optional for a queue: the store's own time, which the fleet agrees on. The scheduler
    enqueues a slot only once the store's time has reached it, so a worker whose clock runs
    fast cannot enqueue early."""

    async def store_now(self) -> datetime:
        """The store's current UTC time, timezone-aware."""
        ...


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    """One job to add to the queue. ``payload`` is a JSON object including ``"action"``."""

    payload: Mapping[str, Any]
    microservice: str
    priority: int = 0  #: higher runs first
    delay_seconds: float = 0.0  #: do not run before now + delay (on the store's clock)
    max_attempts: int = 3
    token: str | None = None  #: correlation id; defaults to the job id
    idempotency_key: str | None = None  #: unique among unfinished jobs of one service
    #: unique among all jobs of one service, finished ones included, until purged (the
    #: scheduler's ``schedule:<action>:<slot>`` keys); a duplicate raises DuplicateJobError
    unique_key: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue depth by status for one service, and how long its oldest due job has waited.

    Read with a ``count_limit`` (:meth:`JobQueue.stats`), each status's count stops at the
    limit: :attr:`at_least` names the statuses whose count reached it."""

    #: jobs by stored status; ``counts[READY]`` includes the scheduled ones
    counts: Mapping[JobStatus, int]
    #: seconds since the longest-waiting *due* Ready job became due (``max(created_at,
    #: run_at)``, on the store's clock); None when no Ready job is due. Jobs scheduled for
    #: later never count: a delayed job is not a waiting one.
    oldest_ready_age_seconds: float | None = None
    #: actions of the service an operator paused (see :class:`FleetAdmin`; empty for a
    #: queue that does not implement it)
    paused_actions: frozenset[str] = frozenset()
    # --- store: scheduled jobs (issue 19 item 9) ---------------------------------------------
    #: Ready jobs not due yet (``run_at`` in the future): shown as *scheduled*
    scheduled: int = 0
    # --- end store ---------------------------------------------------------------------------
    #: statuses whose count reached the ``count_limit`` the sample was read with: there are
    #: at least that many (a lower bound); every other count is exact. Empty for a sample
    #: read without a limit. ``scheduled`` is counted in the same pass as the Ready jobs, so
    #: with READY here it is a lower bound too (counted among the Ready jobs read).
    at_least: frozenset[JobStatus] = frozenset()


@dataclass(frozen=True, slots=True)
class ReclaimResult:
    """Ids of jobs whose lease had expired: put back to Ready, or failed (no attempts left)."""

    requeued: Sequence[str] = ()
    failed: Sequence[str] = ()

    def __len__(self) -> int:
        return len(self.requeued) + len(self.failed)


@dataclass(frozen=True, slots=True)
class LeaseRenewal:
    """What :meth:`JobQueue.extend_leases` found: jobs whose lease was lost (another worker
    owns them now: drop them), and jobs still owned whose cancellation an operator asked
    for (stop the handler, record them Failed with ``CANCELLED``)."""

    lost: frozenset[str] = frozenset()
    cancel: frozenset[str] = frozenset()


@runtime_checkable
class JobQueue(Protocol):
    """Everything the worker and producers need from a job store.

    Ownership rules every adapter follows (the contract suite in ``usvc_testing`` checks them):

    - ``claim`` moves up to ``limit`` due Ready jobs of one service to Assigned, highest
      priority first, then oldest ``run_at``, under a lease of ``lease_seconds`` measured on
      the store's clock, with a fresh fencing token in ``Job.lease_token``.
    - Every later transition names the job's id and fencing token and the status it expects;
      when they no longer match, it raises :class:`~usvc_core.errors.LeaseLostError` and
      changes nothing.
    - ``mark_processing`` counts the attempt (``claim_and_start`` does both steps at once).
      ``release`` puts a job back to Ready without
      spending an attempt (it gives back the one ``mark_processing`` counted).
    - ``reclaim_expired`` puts Assigned jobs with an expired lease back to Ready, and Processing
      ones back to Ready while attempts are left, else Failed with ``LEASE_EXPIRED``.
    - *Never started* (store: issue 22 item 3): a job handed out by ``claim_and_start`` is
      Processing with its attempt counted, but it counts as *started* only once its claimer
      confirms it holds it: a lease renewal (``extend_leases``) or an outcome. Reclaimed
      unconfirmed (the claim committed, its reply was lost, so no worker ever knew of it), it
      gets its attempt back and goes to Ready (history: ``not_started``), once per job: a
      second unconfirmed rescue spends the attempt like any other, so a job that kills its
      worker before the first renewal runs at most once more than ``max_attempts``, never
      forever. ``mark_processing`` is itself the confirmation.
    - Attempt history (store: issue 21 item 1): every start opens an attempt (worker id,
      start); its end (complete, fail, retry, release, rescue) closes it with its outcome
      and error. ``get`` returns the last N (the adapter's ``attempt_history``, default
      20); retries and rescues never overwrite an earlier attempt's error.
    - A stored payload that is not valid JSON is delivered with ``payload=None`` and
      ``payload_error`` set; it never breaks a claim.
    - Store failures raise :class:`~usvc_core.errors.QueueError` (usually
      :class:`~usvc_core.errors.QueueUnavailableError`).
    """

    async def open(self) -> None:
        """Connect and make sure the schema exists; fail with a message that says what to fix."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise QueueUnavailableError when the store cannot be reached."""
        ...

    def on_enqueue(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every enqueue made through this object (in-process wake-up)."""
        ...

    async def enqueue(self, request: EnqueueRequest) -> Job: ...

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]: ...

    async def claim(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        max_running: Mapping[str, int] | None = None,
    ) -> list[Job]:
        """``max_running`` maps an action to the most jobs of it that may be Assigned or
        Processing at once across every worker of the service; the store enforces it inside
        the claim. Jobs over their limit stay Ready and never hold back other actions."""
        ...

    async def mark_processing(self, job: Job, lease_seconds: float) -> Job:
        """Assigned -> Processing; returns the job with ``attempts`` counted."""
        ...

    async def claim_and_start(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        max_running: Mapping[str, int] | None = None,
    ) -> list[Job]:
        """``claim``, then ``mark_processing`` of every claimed job, as one step (one
        transaction where the store has them): the jobs come back Processing, attempt
        counted, in claim order. The worker uses it, since it starts every job it claims at
        once; it spares a store round trip and a commit per job."""
        ...

    async def extend_leases(self, jobs: Sequence[Job], lease_seconds: float) -> LeaseRenewal:
        """Extend the leases of ``jobs``; report the ones lost and the ones to cancel."""
        ...

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None: ...

    async def fail(
        self, job: Job, error_code: str, error_message: str, runtime_ms: float | None
    ) -> None: ...

    async def retry(
        self,
        job: Job,
        error_code: str,
        error_message: str,
        delay_seconds: float,
        runtime_ms: float | None,
    ) -> JobStatus:
        """Processing -> Ready after ``delay_seconds`` (or Failed when no attempts are left)."""
        ...

    async def release(self, jobs: Sequence[Job]) -> int:
        """Assigned/Processing -> Ready, no attempt spent; returns how many were released."""
        ...

    async def reclaim_expired(self, microservice: str) -> ReclaimResult: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def stats(self, microservice: str, *, count_limit: int | None = None) -> QueueStats:
        """Counts by status, scheduled jobs, the oldest due job's wait, paused actions.
        Without ``count_limit`` every count is exact (one pass over the service's jobs of
        each status); with it (>= 1) each status's count stops at the limit, so that the
        read costs the same at any depth (see :attr:`QueueStats.at_least`). The oldest due
        job's wait is exact either way."""
        ...

    async def purge(self, microservice: str, older_than_seconds: float) -> int:
        """Delete finished jobs that finished more than ``older_than_seconds`` ago."""
        ...


#: The most jobs :meth:`QueueAdmin.find_jobs` returns.
FIND_LIMIT = 100


@runtime_checkable
class QueueAdmin(Protocol):
    """What operators need from a job store: look at jobs, retry and cancel them. Every
    queue adapter implements it beside :class:`JobQueue`; the CLI, the admin API and the
    dashboard use only this port (plus ``JobQueue.get``/``enqueue``/``stats``/``purge``)."""

    async def list_jobs(
        self, where: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """Jobs matching ``where``, newest first (``created_at``, then id, descending), at
        most ``limit``; keyset pagination through ``cursor`` (stable while jobs are added).
        A malformed cursor raises ValueError."""
        ...

    async def retry_failed(
        self, microservice: str, job_ids: Sequence[str] = (), where: JobFilter | None = None
    ) -> int:
        """Failed jobs (the given ids, or every job matching ``where``) back to Ready, due
        now, with fresh attempts (attempts 0) and their error cleared; returns how many.
        Jobs that are not Failed, or not of ``microservice``, are left alone."""
        ...

    async def cancel(self, microservice: str, job_id: str) -> JobStatus:
        """Ready/Assigned -> Failed with ``CANCELLED`` (returns FAILED); Processing -> its
        cancellation is requested (``Job.cancel_requested``; its worker stops the handler
        at its next lease renewal and records CANCELLED; returns PROCESSING); a finished
        job is left as it is (returns its status). Unknown id: JobNotFoundError."""
        ...

    async def activity(self, microservice: str, *, minutes: int = 60) -> QueueActivity:
        """Counts by action and status, oldest Ready age by action, and completed/failed
        per minute over the last ``minutes`` minutes (on the store's clock)."""
        ...

    # --- store: lookup and session revocation (issues 21 item 5, 19 item 4) ------------------

    async def find_jobs(self, microservice: str, key: str) -> Sequence[Job]:
        """The jobs of ``microservice`` that ``key`` names: the job with that id, the job
        holding that unique key, the jobs with that idempotency key (finished ones too),
        newest first, at most :data:`FIND_LIMIT`. None found: an empty sequence."""
        ...

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        """Remember that the admin session ``session_id`` was ended (logout), until
        ``until`` (timezone-aware: when the session would have expired anyway). Every
        process sharing the store refuses it from then on. Revocations past their
        ``until`` are forgotten (deleted), so the store keeps only live ones."""
        ...

    async def session_revoked(self, session_id: str) -> bool:
        """Whether ``session_id`` was revoked (and its revocation has not expired)."""
        ...

    # --- end store ---------------------------------------------------------------------------


# --- the fleet: worker records, gone workers, paused actions ---------------------------------


#: A worker is gone once it missed this many heartbeats.
GONE_AFTER_HEARTBEATS = 2


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One worker process as it records itself in the store at each heartbeat.

    The worker fills in who it is; the store sets ``last_seen_at`` (its own clock) when it
    writes the record and ``gone`` when it reads it back: a worker silent for more than two
    of its heartbeats (``2 * heartbeat_seconds``) is gone."""

    worker_id: str  #: the ``lease_owner`` of the jobs it claims
    microservice: str
    host: str
    pid: int
    version: str  #: the service's version (``SERVICE_VERSION``)
    started_at: datetime
    heartbeat_seconds: float  #: how often it promises to heartbeat
    actions: tuple[str, ...] = ()  #: the actions it handles
    concurrency: int = 0  #: its ``MAX_CONCURRENT_JOBS``
    running: int = 0  #: jobs it owned at this heartbeat
    last_seen_at: datetime | None = None  #: set by the store
    gone: bool = False  #: set by the store when read


@runtime_checkable
class FleetAdmin(Protocol):
    """What a store keeps about a service's fleet, beside its jobs: the worker processes
    (heartbeats; the leases of a gone worker are released at once, not at lease expiry) and
    the actions an operator paused. Every queue adapter of the kit implements it (the
    ``FleetContract`` suite of ``usvc_testing.contract`` checks it); the worker uses it
    when its queue does.

    Rules every adapter follows:

    - Times are the store's: ``last_seen_at`` is its clock at the heartbeat, and a worker
      is gone once that clock passes ``last_seen_at + 2 * heartbeat_seconds``.
    - A paused action's Ready jobs are not claimed by any worker (``claim`` and
      ``claim_and_start`` step over them as over an action at its ``max_running``, without
      holding back other actions) until it is resumed; its running jobs are left alone.

    How the kit's adapters do it (``usvc_sqlite.fleet``): a table of worker records keyed by
    (service, worker id) written by an upsert; ``reclaim_gone_workers`` sets the lease
    expiry of the gone owners' jobs to the past and runs the reclaim of expired leases, in
    one transaction (a cheap read first, so the usual call takes no lock); a table of
    paused actions keyed by (service, action), read inside the claim's transaction and
    merged into ``max_running`` as limits of 0. ``usvc_core.adapter_support`` has the
    argument checks (``check_worker_record``, ``check_action_name``).
    """

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        """Insert or replace the record of ``record.worker_id`` in its service, last seen
        now. A gone worker that heartbeats again is live again (its released jobs stay
        with whoever claimed them: the fencing tokens refuse its late writes)."""
        ...

    async def remove_worker(self, microservice: str, worker_id: str) -> None:
        """Delete a worker's record (a clean shutdown, after releasing its jobs)."""
        ...

    async def list_workers(self, microservice: str) -> list[WorkerRecord]:
        """The service's worker records, oldest start first, ``gone`` set."""
        ...

    async def reclaim_gone_workers(self, microservice: str) -> ReclaimResult:
        """End at once the leases of the service's jobs whose owner is a gone worker, with
        the rules of an expired lease (see :meth:`JobQueue.reclaim_expired`): Assigned ->
        Ready, no attempt spent; Processing -> Ready with the attempt spent and
        ``LEASE_EXPIRED`` recorded, or Failed with ``LEASE_EXPIRED`` when no attempts are
        left. Jobs whose owner has no record are left to lease expiry."""
        ...

    async def forget_gone_workers(self, microservice: str, older_than_seconds: float) -> int:
        """Delete the records of gone workers last seen more than ``older_than_seconds``
        ago; returns how many."""
        ...

    async def pause_action(self, microservice: str, action: str) -> bool:
        """Stop every worker of the service from claiming ``action``'s jobs; False when it
        was paused already. An empty action name raises ValueError."""
        ...

    async def resume_action(self, microservice: str, action: str) -> bool:
        """Let ``action``'s jobs be claimed again; False when it was not paused."""
        ...

    async def paused_actions(self, microservice: str) -> Mapping[str, datetime]:
        """The service's paused actions, each with when it was paused (store's clock)."""
        ...


class Metrics(Protocol):
    """What the worker reports; ``usvc-http`` implements it with prometheus_client."""

    def job_started(self, action: str) -> None: ...

    def job_finished(self, action: str, outcome: str, duration_seconds: float) -> None:
        """``outcome`` is one of completed, failed, retried, released, lost."""
        ...

    def jobs_claimed(self, count: int) -> None: ...

    def jobs_reclaimed(self, requeued: int, failed: int) -> None:
        """Jobs whose lease expired, put back to Ready or failed with LEASE_EXPIRED (no
        attempts left: those count as jobs that ended in error too)."""
        ...

    def jobs_released(self, count: int) -> None: ...

    def queue_error(self, operation: str) -> None: ...

    def queue_stats(self, stats: QueueStats) -> None: ...

    def schedule_next_run(self, action: str, timestamp: float) -> None:
        """When the scheduler will next enqueue ``action`` (Unix seconds)."""
        ...

    def health_changed(self, overall: Status, checks: Mapping[str, Status]) -> None: ...

    def event_loop_lag(self, seconds: float) -> None:
        """The event loop's recent lag (the largest over the monitor's window)."""
        ...


class ServiceRegistry(Protocol):
    """Publishes a service's schemas once, heartbeats an instance, deregisters it."""

    async def publish_schemas(self, description: ServiceDescription) -> None: ...

    async def heartbeat(self, instance: InstanceInfo) -> None: ...

    async def deregister(self, instance_id: str) -> None: ...


class Surface(Protocol):
    """Something started and stopped with the application (HTTP server, registry heartbeat)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
