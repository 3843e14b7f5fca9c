"""The in-memory queue: the whole queue port in one process (dev mode, unit tests)."""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import json
import json.scanner
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from usvc_core.adapter_support import (
    QueueBase,
    capped_counts,
    check_action_name,
    check_count_limit,
    check_worker_record,
    current_attempt,
    decode_payload,
    gone_since,
)
from usvc_core.clock import SystemClock
from usvc_core.errors import DuplicateJobError, JobNotFoundError, LeaseLostError
from usvc_core.jobs import AttemptOutcome, ErrorCode, Job, JobAttempt, JobStatus
from usvc_core.ports import (
    FIND_LIMIT,
    Clock,
    EnqueueRequest,
    FleetAdmin,
    JobQueue,
    LeaseRenewal,
    QueueAdmin,
    QueueStats,
    ReclaimResult,
    WorkerRecord,
)

if TYPE_CHECKING:
    from usvc_core.admin_records import JobFilter, JobPage, QueueActivity

__all__ = ["DEFAULT_ATTEMPT_HISTORY", "InMemoryQueue"]

#: How many attempts of a job ``get`` shows by default (``JOB_ATTEMPT_HISTORY``).
DEFAULT_ATTEMPT_HISTORY = 20

_READY, _ASSIGNED, _PROCESSING = JobStatus.READY, JobStatus.ASSIGNED, JobStatus.PROCESSING
_COMPLETED, _FAILED = JobStatus.COMPLETED, JobStatus.FAILED
_NO_LIMIT = float("inf")
# What _owned accepts: a tuple passed as one argument (CPython 3.12 does not specialise a
# call into a function taking *args, and complete calls _owned once per job).
_UNSTARTED, _RUNNING = (_ASSIGNED,), (_PROCESSING,)

# The enqueue's JSON round trip, json.loads(json.dumps(payload, allow_nan=False)), with the
# C encoder and scanner called directly: json.dumps with an option builds a JSONEncoder
# per call and json.loads wraps the scanner, seven Python calls per enqueue. Same errors:
# json.dumps runs this very encoder (and json.loads this scanner), and its output needs
# none of decode's checks (no surrounding whitespace, no trailing text).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_default = json.JSONEncoder().default  # TypeError: "Object of type X is not JSON serializable"
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _encoder() -> Callable[[Any, int], list[str]] | None:
    """The C encoder json.dumps(..., allow_nan=False) runs (None without the accelerator)."""
    if _c_make_encoder is None:
        return None
    encoder: Callable[[Any, int], list[str]] = _c_make_encoder(
        {}, _default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return encoder


# run_at itself, not its timestamp: one clock's datetimes compare as they are, and
# .timestamp() per push cost more than the comparisons.
_Entry = tuple[int, datetime, int, int, str]


class _Due:
    """One service's due jobs in claim order, as entries ``(-priority, run_at, order,
    seq, id)``: ``order`` (creation order) breaks ties like a store's
    job id, ``seq`` marks the live entry of a job pushed more than once.

    Most entries arrive in claim order already (one priority, enqueued now): those join a
    FIFO line, a constant cost each way; the others (a higher priority, a delayed job come
    due, a released job keeping its place) go to a heap. A pop takes the smaller head. A
    heap alone cost a claim 14 tuple comparisons per job with 20,000 jobs waiting."""

    __slots__ = ("heap", "line")

    def __init__(self) -> None:
        self.line: deque[_Entry] = deque()
        self.heap: list[_Entry] = []

    def __bool__(self) -> bool:
        return bool(self.line or self.heap)

    def push(self, entry: _Entry) -> None:
        line = self.line
        if not line or entry > line[-1]:
            line.append(entry)
        else:
            heapq.heappush(self.heap, entry)

    def peek(self) -> _Entry | None:
        line, heap = self.line, self.heap
        if heap and (not line or heap[0] < line[0]):
            return heap[0]
        return line[0] if line else None

    def pop(self) -> _Entry | None:
        """The first entry in claim order, taken out; None when there is none."""
        line, heap = self.line, self.heap
        if heap and (not line or heap[0] < line[0]):
            return heapq.heappop(heap)
        return line.popleft() if line else None


@dataclasses.dataclass(slots=True)
class _Terms:
    """What every job of one claim is leased with. ``tag``: the claim's part of its jobs'
    fencing tokens (a token is ``tag + job id``: one claim number per claim call, and a job
    is in a claim at most once; formatting a number per job cost three times as much)."""

    worker_id: str
    now: datetime
    expires: datetime
    start: bool  # Processing at once (claim_and_start), else Assigned
    tag: str
    leased: set[str]  # the service's leased ids, looked up once per claim, not per job


class InMemoryQueue(QueueBase, JobQueue, QueueAdmin, FleetAdmin):
    """Implements :class:`usvc_core.ports.JobQueue`, :class:`usvc_core.ports.QueueAdmin`
    and :class:`usvc_core.ports.FleetAdmin` in memory; lost when the process ends.

    Time comes from the injected clock (``FakeClock`` in tests). Job ids are ``dev-1``,
    ``dev-2``, ... (``id_prefix``). Returned jobs are snapshots: changing them changes nothing.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        id_prefix: str = "dev-",
        attempt_history: int = DEFAULT_ATTEMPT_HISTORY,
    ) -> None:
        super().__init__()
        if isinstance(attempt_history, bool) or not isinstance(attempt_history, int):
            raise TypeError(f"attempt_history={attempt_history!r} must be a whole number")
        if attempt_history < 1:
            raise ValueError(f"attempt_history={attempt_history!r}: keep at least 1 attempt")
        self.attempt_history = attempt_history
        self._clock: Clock = clock if clock is not None else SystemClock()
        # The clock read once per completion: the system clock's reading without its
        # method's frame (half the cost); any other clock (FakeClock) is asked itself.
        self._now: Callable[[], datetime] = (
            functools.partial(datetime.now, UTC)
            if type(self._clock) is SystemClock
            else self._clock.now
        )
        self._prefix = id_prefix
        # One encoder per queue, not one per call as json.dumps makes (see _json_copy).
        self._encode = _encoder()
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._jobs: dict[str, Job] = {}
        # per service: due jobs (see _Due) and delayed heap (run_at, seq, id)
        self._due: dict[str, _Due] = {}
        self._order: dict[str, int] = {}
        self._orders = itertools.count()
        self._delayed: dict[str, list[tuple[datetime, int, str]]] = {}
        self._heap_seq: dict[str, int] = {}
        self._leased: dict[str, set[str]] = {}  # service -> ids of Assigned/Processing jobs
        # service -> action -> due jobs held back by their action's limit (see _claim_limited)
        self._parked: dict[str, dict[str, _Due]] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        # (service, unique key) -> job id; dropped only when purge deletes the job
        self._unique: dict[tuple[str, str], str] = {}
        # Fencing tokens: unique per claim of a job (see _Terms.tag); a counter is as good
        # as a uuid here and cheaper.
        self._token_prefix = f"{uuid.uuid4().hex[:12]}-"
        self._tokens = itertools.count(1)
        # The fleet: service -> worker id -> record; service -> paused action -> since.
        self._workers: dict[str, dict[str, WorkerRecord]] = {}
        self._paused: dict[str, dict[str, datetime]] = {}
        self.closed = False
        # --- store: attempts, never-started rescues, session revocations ---------------------
        self._history: dict[str, list[JobAttempt]] = {}  # closed attempts, oldest first
        self._attempt_no: dict[str, int] = {}  # number of the job's latest attempt
        self._confirmed: set[str] = set()  # jobs whose current start its claimer confirmed
        self._given_back: set[str] = set()  # jobs that already got an unstarted attempt back
        self._revoked: dict[str, datetime] = {}  # admin session id -> until
        # --- end store -------------------------------------------------------------------------

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    async def ping(self) -> None:
        return None

    # --- producing ---------------------------------------------------------------------------

    async def enqueue(self, request: EnqueueRequest) -> Job:
        job = self._add(request)
        self._notify()
        return job.snapshot()

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Job]:
        # All or nothing, like a transaction: check every key first.
        idempotency: set[tuple[str, str]] = set()
        unique: set[tuple[str, str]] = set()
        for r in requests:
            self._check_keys(r)
            if r.unique_key is not None:
                key = (r.microservice, r.unique_key)
                if key in unique:
                    raise DuplicateJobError(
                        f"unique key {r.unique_key!r} is given twice in this enqueue_many", None
                    )
                unique.add(key)
            if r.idempotency_key is not None:
                key = (r.microservice, r.idempotency_key)
                if key in idempotency:
                    raise DuplicateJobError(
                        f"idempotency key {r.idempotency_key!r} is given twice in this "
                        "enqueue_many",
                        None,
                    )
                idempotency.add(key)
        jobs = [self._add(r) for r in requests]
        self._notify()
        return [j.snapshot() for j in jobs]

    async def enqueue_raw(self, microservice: str, raw: str | bytes, *, action: str = "") -> Job:
        """Store a payload exactly as another producer might have written it, valid JSON or
        not (for tests of what claims and the worker make of it). Claims deliver a payload
        that does not decode with ``payload=None`` and ``payload_error`` set."""
        payload, error = decode_payload(raw)
        now = self._clock.now()
        job_id = f"{self._prefix}{next(self._ids)}"
        job = Job(
            id=job_id,
            microservice=microservice,
            action=action,
            payload=payload,
            run_at=now,
            created_at=now,
            updated_at=now,
            payload_error=error,
        )
        self._jobs[job_id] = job
        self._order[job_id] = next(self._orders)
        self._push_ready(job)
        self._notify()
        return job.snapshot()

    def _holder(self, key: tuple[str, str]) -> str | None:
        job_id = self._idempotency.get(key)
        if job_id is None:
            return None
        job = self._jobs.get(job_id)
        if job is None or job.status.is_finished:
            del self._idempotency[key]
            return None
        return job_id

    def _check_keys(self, r: EnqueueRequest) -> None:
        """Refuse a request whose unique or idempotency key is taken (or max_attempts < 1)."""
        if r.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if r.unique_key is not None:
            holder = self._unique.get((r.microservice, r.unique_key))
            if holder is not None:
                raise DuplicateJobError(
                    f"unique key {r.unique_key!r} is held by job {holder}", holder
                )
        if r.idempotency_key is not None:
            holder = self._holder((r.microservice, r.idempotency_key))
            if holder is not None:
                raise DuplicateJobError(
                    f"idempotency key {r.idempotency_key!r} is held by unfinished job {holder}",
                    holder,
                )

    def _add(self, r: EnqueueRequest) -> Job:
        if r.max_attempts < 1 or r.unique_key is not None or r.idempotency_key is not None:
            self._check_keys(r)  # nothing to check for the common request
        # A JSON round trip: the stored payload is exactly what a real store would keep.
        # The encoder takes a dict only: another mapping is copied into one first.
        given = r.payload
        payload = self._json_copy(given if type(given) is dict else dict(given))
        action = payload.get("action")
        now = self._now()
        job_id = f"{self._prefix}{next(self._ids)}"
        job = Job(
            id=job_id,
            microservice=r.microservice,
            action=action if isinstance(action, str) else "",
            payload=payload,
            priority=r.priority,
            run_at=now + timedelta(seconds=max(r.delay_seconds, 0.0)) if r.delay_seconds else now,
            max_attempts=r.max_attempts,
            token=r.token or job_id,
            idempotency_key=r.idempotency_key,
            created_at=now,
            updated_at=now,
            unique_key=r.unique_key,
        )
        self._jobs[job_id] = job
        self._order[job_id] = next(self._orders)
        if r.idempotency_key is not None:
            self._idempotency[(r.microservice, r.idempotency_key)] = job_id
        if r.unique_key is not None:
            self._unique[(r.microservice, r.unique_key)] = job_id
        self._push_ready(job, now)
        return job

    def _json_copy(self, payload: dict[str, Any]) -> Any:
        """``json.loads(json.dumps(payload, allow_nan=False))``: the same value or error."""
        encode = self._encode
        if encode is None:  # a Python without the _json accelerator
            return json.loads(json.dumps(payload, allow_nan=False))
        try:
            text = "".join(encode(payload, 0))
        except BaseException:
            # The encoder's markers (its circular-reference check) are empty again after
            # an encoding that succeeds, but may keep entries after one that fails.
            self._encode = _encoder()
            raise
        return _scan(text, 0)[0]

    def _push_ready(self, job: Job, now: datetime | None = None) -> None:
        """Queue a Ready job: due now (``now``: the clock's reading, when the caller has
        one), or in the delayed heap."""
        seq = next(self._seq)
        self._heap_seq[job.id] = seq
        assert job.run_at is not None
        if job.run_at <= (now if now is not None else self._clock.now()):
            due = self._due.get(job.microservice)
            if due is None:
                due = self._due[job.microservice] = _Due()
            due.push((-job.priority, job.run_at, self._order[job.id], seq, job.id))
        else:
            heapq.heappush(
                self._delayed.setdefault(job.microservice, []), (job.run_at, seq, job.id)
            )

    # --- claiming ----------------------------------------------------------------------------

    async def _claim(
        self,
        microservice: str,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        *,
        start: bool,
        limits: dict[str, int],
    ) -> list[Job]:
        now = self._clock.now()
        due = self._due.get(microservice)
        if due is None:
            due = self._due[microservice] = _Due()
        delayed = self._delayed.get(microservice)
        while delayed and delayed[0][0] <= now:
            run_at, seq, job_id = heapq.heappop(delayed)
            job = self._jobs.get(job_id)
            if job is not None:
                due.push((-job.priority, run_at, self._order[job_id], seq, job_id))
        leased = self._leased.get(microservice)
        if leased is None:
            leased = self._leased[microservice] = set()
        terms = _Terms(
            worker_id,
            now,
            now + timedelta(seconds=lease_seconds),
            start,
            f"{self._token_prefix}{next(self._tokens)}:",
            leased,
        )
        paused = self._paused.get(microservice)
        if paused:  # a paused action is held back like one at a limit of 0
            limits = {**limits, **dict.fromkeys(paused, 0)}
        if limits or microservice in self._parked:
            return self._claim_limited(microservice, limit, terms, limits)
        claimed: list[Job] = []
        jobs, heap_seq, lease = self._jobs, self._heap_seq, self._lease
        while len(claimed) < limit:
            entry = due.pop()
            if entry is None:
                break
            _, _, _, seq, job_id = entry
            job = jobs.get(job_id)
            if job is None or job.status is not _READY or heap_seq.get(job_id) != seq:
                continue  # stale entry
            claimed.append(lease(job, terms))
        return claimed

    def _claim_limited(
        self,
        microservice: str,
        limit: int,
        terms: _Terms,
        limits: Mapping[str, int],
    ) -> list[Job]:
        """The claim when some action has a limit, or has jobs parked by an earlier one.

        A due job whose action is at its limit moves from the service's line to its
        action's parked line, so that later claims step over it once, not at every claim;
        each claim takes the best of the service's line and the heads of the parked lines
        of actions below their limit."""
        due = self._due[microservice]
        parked = self._parked.setdefault(microservice, {})
        # Counted from the leased jobs here, not kept per job: a claim without limits, the
        # common case, pays nothing for limits.
        running: dict[str, int] = {}
        for job_id in self._leased.get(microservice, ()):
            action = self._jobs[job_id].action
            running[action] = running.get(action, 0) + 1
        claimed: list[Job] = []
        while len(claimed) < limit:
            best, head = due, due.peek()
            for action, waiting in parked.items():
                if not waiting or running.get(action, 0) >= limits.get(action, _NO_LIMIT):
                    continue
                first = waiting.peek()
                if head is None or (first is not None and first < head):
                    best, head = waiting, first
            if head is None:
                break
            best.pop()  # head, the first of best
            entry = head
            job_id, seq = entry[4], entry[3]
            job = self._jobs.get(job_id)
            if job is None or job.status is not _READY or self._heap_seq.get(job_id) != seq:
                continue  # stale entry
            if best is due and running.get(job.action, 0) >= limits.get(job.action, _NO_LIMIT):
                aside = parked.get(job.action)
                if aside is None:
                    aside = parked[job.action] = _Due()
                aside.push(entry)
                continue
            claimed.append(self._lease(job, terms))
            running[job.action] = running.get(job.action, 0) + 1
        for action in [a for a, waiting in parked.items() if not waiting]:
            del parked[action]
        if not parked:
            del self._parked[microservice]  # back to the plain claim
        return claimed

    def _lease(self, job: Job, terms: _Terms) -> Job:
        """Lease ``job`` on a claim's ``terms`` (an object, not keyword arguments: CPython
        3.12 specialises no call that names an argument, and this runs once per job)."""
        now = terms.now
        if terms.start:  # what mark_processing does, at once (unconfirmed: see JobQueue)
            job.status = _PROCESSING
            job.attempts += 1
            job.started_at = now
            self._open_attempt(job.id, False)
        else:
            job.status = _ASSIGNED
        job.lease_owner = terms.worker_id
        job.lease_token = terms.tag + job.id
        job.lease_expires_at = terms.expires
        job.updated_at = now
        terms.leased.add(job.id)
        return job.snapshot()

    def _unlease(self, job: Job) -> None:
        """Forget the claim of a job leaving Assigned/Processing (no-op for others)."""
        leased = self._leased.get(job.microservice)
        if leased is not None:
            leased.discard(job.id)

    def _owned(self, job: Job, expected: tuple[JobStatus, ...]) -> Job:
        stored = self._jobs.get(job.id)
        if stored is None or stored.lease_token != job.lease_token or stored.status not in expected:
            raise _lease_lost(job, stored)
        return stored

    async def mark_processing(self, job: Job, lease_seconds: float) -> Job:
        stored = self._owned(job, _UNSTARTED)
        now = self._clock.now()
        stored.status = _PROCESSING
        stored.attempts += 1
        stored.started_at = now
        stored.lease_expires_at = now + timedelta(seconds=lease_seconds)
        stored.updated_at = now
        self._open_attempt(stored.id, True)
        return stored.snapshot()

    async def extend_leases(self, jobs: Sequence[Job], lease_seconds: float) -> LeaseRenewal:
        now = self._clock.now()
        lost: set[str] = set()
        cancel: set[str] = set()
        for job in jobs:
            stored = self._jobs.get(job.id)
            if (
                stored is None
                or stored.lease_token != job.lease_token
                or stored.status not in (_ASSIGNED, _PROCESSING)
            ):
                lost.add(job.id)
                continue
            stored.lease_expires_at = now + timedelta(seconds=lease_seconds)
            stored.updated_at = now
            self._confirmed.add(stored.id)  # its claimer holds it: the job has started
            if stored.cancel_requested:
                cancel.add(job.id)
        return LeaseRenewal(lost=frozenset(lost), cancel=frozenset(cancel))

    def _finish(self, stored: Job, status: JobStatus, runtime_ms: float | None) -> None:
        """A leased job ends with ``status``."""
        now = self._now()
        stored.status = status
        stored.finished_at = now
        stored.updated_at = now
        stored.lease_expires_at = None
        stored.runtime_ms = runtime_ms
        self._unlease(stored)
        if self._confirmed:  # store: only leased jobs need the mark
            self._confirmed.discard(stored.id)

    async def complete(self, job: Job, results: Any, runtime_ms: float) -> None:
        stored = self._owned(job, _RUNNING)
        # Kept by reference: the worker only hands over JSON-ready values (see json_ready).
        stored.results = results
        if stored.error_code is not None:  # from an earlier attempt
            stored.error_code = stored.error_message = None
        self._finish(stored, _COMPLETED, runtime_ms)

    async def fail(
        self, job: Job, error_code: str, error_message: str, runtime_ms: float | None
    ) -> None:
        stored = self._owned(job, _RUNNING)
        stored.error_code, stored.error_message = error_code, error_message
        self._finish(stored, _FAILED, runtime_ms)

    async def retry(
        self,
        job: Job,
        error_code: str,
        error_message: str,
        delay_seconds: float,
        runtime_ms: float | None,
    ) -> JobStatus:
        stored = self._owned(job, _RUNNING)
        stored.error_code, stored.error_message = error_code, error_message
        if stored.attempts >= stored.max_attempts:
            self._finish(stored, _FAILED, runtime_ms)
            return _FAILED
        self._close_attempt(stored, AttemptOutcome.RETRIED)
        self._requeue(stored, delay_seconds)
        stored.runtime_ms = runtime_ms
        return _READY

    def _requeue(self, stored: Job, delay_seconds: float) -> None:
        now = self._clock.now()
        stored.status = _READY
        stored.lease_owner = stored.lease_token = stored.lease_expires_at = None
        stored.cancel_requested = False
        stored.run_at = now + timedelta(seconds=max(delay_seconds, 0.0))
        stored.updated_at = now
        self._unlease(stored)
        self._push_ready(stored)

    async def release(self, jobs: Sequence[Job]) -> int:
        released = 0
        for job in jobs:
            stored = self._jobs.get(job.id)
            if (
                stored is None
                or stored.lease_token != job.lease_token
                or stored.status not in (_ASSIGNED, _PROCESSING)
            ):
                continue
            if stored.status is _PROCESSING:
                stored.attempts = max(0, stored.attempts - 1)  # the attempt was not spent
                self._close_attempt(stored, AttemptOutcome.RELEASED, error=False)
            run_at = stored.run_at
            self._requeue(stored, 0.0)
            stored.run_at = run_at  # keeps its place in line
            self._heap_seq.pop(stored.id, None)
            self._push_ready(stored)
            released += 1
        if released:
            self._notify()
        return released

    async def reclaim_expired(self, microservice: str) -> ReclaimResult:
        now = self._clock.now()
        requeued: list[str] = []
        failed: list[str] = []
        for job_id in list(self._leased.get(microservice, ())):
            stored = self._jobs[job_id]
            if stored.lease_expires_at is None or stored.lease_expires_at >= now:
                continue
            if stored.status is _PROCESSING:
                unstarted = job_id not in self._confirmed and job_id not in self._given_back
                if unstarted:  # the claim's reply was lost: nobody ran it (see JobQueue)
                    stored.attempts = max(0, stored.attempts - 1)
                    stored.error_code = ErrorCode.LEASE_EXPIRED.value
                    stored.error_message = _never_started(stored.lease_owner)
                    self._given_back.add(job_id)
                    self._close_attempt(stored, AttemptOutcome.NOT_STARTED)
                elif stored.attempts >= stored.max_attempts:
                    stored.error_code = ErrorCode.LEASE_EXPIRED.value
                    stored.error_message = (
                        f"the worker running attempt {stored.attempts} of "
                        f"{stored.max_attempts} stopped renewing its lease (crashed or "
                        "stalled); no attempts left"
                    )
                    self._finish(stored, _FAILED, None)
                    failed.append(job_id)
                    continue
                else:
                    stored.error_code = ErrorCode.LEASE_EXPIRED.value
                    stored.error_message = "lease expired; the job will run again"
                    self._close_attempt(stored, AttemptOutcome.LEASE_EXPIRED)
            run_at = stored.run_at
            self._requeue(stored, 0.0)
            stored.run_at = run_at  # keeps its place in line: recovery skips the backlog
            self._heap_seq.pop(stored.id, None)
            self._push_ready(stored)
            requeued.append(job_id)
        return ReclaimResult(requeued=requeued, failed=failed)

    # --- operating (QueueAdmin) ------------------------------------------------------------

    async def cancel(self, microservice: str, job_id: str) -> JobStatus:
        stored = self._jobs.get(job_id)
        if stored is None or stored.microservice != microservice:
            raise JobNotFoundError(f"service {microservice!r} has no job {job_id!r}")
        if stored.status in (_READY, _ASSIGNED):
            stored.error_code = ErrorCode.CANCELLED.value
            stored.error_message = (
                f"cancelled by an operator while {stored.status.value} (it never ran)"
            )
            self._finish(stored, _FAILED, None)
        elif stored.status is _PROCESSING:
            stored.cancel_requested = True
            stored.updated_at = self._clock.now()
        return stored.status

    def _matching(self, where: JobFilter) -> list[Job]:
        statuses, actions, codes = where.statuses, where.actions, where.error_codes
        after, before = where.created_after, where.created_before
        scheduled, text = where.scheduled, where.error_text
        now = self._clock.now()
        return [
            job
            for job in self._jobs.values()
            if job.microservice == where.microservice
            and (not statuses or job.status in statuses)
            and (not actions or job.action in actions)
            and (not codes or job.error_code in codes)
            and (after is None or (job.created_at is not None and job.created_at >= after))
            and (before is None or (job.created_at is not None and job.created_at < before))
            and (scheduled is None or job.is_scheduled(now) == scheduled)
            and (text is None or _contains(job.error_message, text))
        ]

    def _list_key(self, job: Job) -> tuple[datetime, int]:
        assert job.created_at is not None
        return (job.created_at, self._order[job.id])

    async def list_jobs(
        self, where: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        # The operator port's checks and records load on first use: an idle worker never
        # calls it (issue 23, idle RSS).
        from usvc_core.adapter_support.admin_checks import check_filter, check_page_limit
        from usvc_core.adapter_support.cursors import decode_cursor, encode_cursor
        from usvc_core.admin_records import JobPage

        check_page_limit(limit)
        check_filter(where)
        jobs = self._matching(where)
        if cursor is not None:
            created, order = decode_cursor(cursor, (str, int))
            try:
                last = (datetime.fromisoformat(created), order)
            except ValueError:
                raise ValueError(f"cursor {cursor!r} is not one that list_jobs gave out") from None
            jobs = [job for job in jobs if self._list_key(job) < last]
        # Newest first: creation time, then creation order (the id's number).
        page = heapq.nlargest(limit + 1, jobs, key=self._list_key)
        next_cursor = None
        if len(page) > limit:
            del page[limit:]
            created_at, order = self._list_key(page[-1])
            next_cursor = encode_cursor(created_at.isoformat(), order)
        return JobPage(jobs=[job.snapshot() for job in page], next_cursor=next_cursor)

    async def retry_failed(
        self, microservice: str, job_ids: Sequence[str] = (), where: JobFilter | None = None
    ) -> int:
        from usvc_core.adapter_support.admin_checks import check_retry_target

        check_retry_target(microservice, job_ids, where)
        if where is not None:
            candidates = self._matching(where)
        else:
            found = (self._jobs.get(job_id) for job_id in dict.fromkeys(job_ids))
            candidates = [j for j in found if j is not None and j.microservice == microservice]
        candidates.sort(key=lambda job: self._order[job.id])
        now = self._clock.now()
        retried = 0
        for job in candidates:
            if job.status is not _FAILED:
                continue
            key = job.idempotency_key
            if key is not None and self._holder((microservice, key)) is not None:
                continue  # an unfinished job already does this work
            if job.started_at is not None:  # its last attempt joins the history
                self._history.setdefault(job.id, []).append(self._current_attempt(job))
                self._trim(job.id)
            job.status = _READY
            job.attempts = 0
            job.run_at = job.updated_at = now
            job.error_code = job.error_message = job.results = None
            job.runtime_ms = None
            job.started_at = job.finished_at = None
            job.lease_owner = job.lease_token = job.lease_expires_at = None
            job.cancel_requested = False
            if key is not None:
                self._idempotency[(microservice, key)] = job.id
            self._push_ready(job)
            retried += 1
        if retried:
            self._notify()
        return retried

    async def activity(self, microservice: str, *, minutes: int = 60) -> QueueActivity:
        from usvc_core.adapter_support.admin_checks import check_minutes
        from usvc_core.admin_records import MinuteActivity, QueueActivity

        check_minutes(minutes)
        now = self._clock.now()
        first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        counts: dict[str, dict[JobStatus, int]] = {}
        oldest: dict[str, datetime] = {}
        scheduled: dict[str, int] = {}
        completed = [0] * minutes
        failed = [0] * minutes
        for job in self._jobs.values():
            if job.microservice != microservice:
                continue
            counts.setdefault(job.action, dict.fromkeys(JobStatus, 0))[job.status] += 1
            if job.status is _READY:
                due = _became_due(job)
                if due > now:
                    scheduled[job.action] = scheduled.get(job.action, 0) + 1
                else:
                    seen = oldest.get(job.action)
                    oldest[job.action] = due if seen is None else min(seen, due)
            elif job.status.is_finished and job.finished_at is not None:
                index = int((job.finished_at - first).total_seconds() // 60)
                if 0 <= index < minutes:
                    (completed if job.status is _COMPLETED else failed)[index] += 1
        return QueueActivity(
            counts=counts,
            oldest_ready_age_seconds={
                action: (now - run_at).total_seconds() for action, run_at in oldest.items()
            },
            per_minute=[
                MinuteActivity(
                    minute=first + timedelta(minutes=i), completed=completed[i], failed=failed[i]
                )
                for i in range(minutes)
            ],
            scheduled=scheduled,
        )

    # --- store: attempt history, lookup, session revocations ----------------------------------

    def _open_attempt(self, job_id: str, confirmed: bool) -> None:
        """Positional: the claim calls it per job, and a call naming an argument is not
        specialised."""
        self._attempt_no[job_id] = self._attempt_no.get(job_id, 0) + 1
        if confirmed:
            self._confirmed.add(job_id)
        elif self._confirmed:  # nothing to drop from an empty set, the drain's case
            self._confirmed.discard(job_id)

    def _close_attempt(self, stored: Job, outcome: AttemptOutcome, *, error: bool = True) -> None:
        """The current attempt of ``stored`` (still leased) ends with ``outcome`` and joins
        the history; call before the lease is dropped."""
        self._history.setdefault(stored.id, []).append(
            JobAttempt(
                number=self._attempt_no.get(stored.id, 0),
                worker_id=stored.lease_owner,
                started_at=stored.started_at,
                finished_at=self._clock.now(),
                outcome=outcome,
                error_code=stored.error_code if error else None,
                error_message=stored.error_message if error else None,
            )
        )
        self._trim(stored.id)
        stored.started_at = None
        self._confirmed.discard(stored.id)

    def _trim(self, job_id: str) -> None:
        history = self._history[job_id]
        if len(history) > self.attempt_history:
            del history[: len(history) - self.attempt_history]

    def _current_attempt(self, job: Job) -> JobAttempt:
        """The attempt the job's own fields describe (it has ``started_at``)."""
        return current_attempt(job, self._attempt_no.get(job.id, 0))

    def _with_history(self, job: Job) -> Job:
        earlier = self._history.get(job.id, ())
        attempts = (
            (*earlier, self._current_attempt(job)) if job.started_at is not None else (*earlier,)
        )
        shown = job.snapshot()
        shown.attempt_history = attempts[-self.attempt_history :]
        return shown

    async def find_jobs(self, microservice: str, key: str) -> Sequence[Job]:
        found = [
            job
            for job in self._jobs.values()
            if job.microservice == microservice
            and key in (job.id, job.unique_key, job.idempotency_key)
        ]
        found.sort(key=self._list_key, reverse=True)
        return [job.snapshot() for job in found[:FIND_LIMIT]]

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        _check_aware("until", until)
        now = self._clock.now()
        for gone in [sid for sid, end in self._revoked.items() if end <= now]:
            del self._revoked[gone]  # past their session's expiry: nothing left to refuse
        if until > now:
            self._revoked[session_id] = max(until, self._revoked.get(session_id, until))

    async def session_revoked(self, session_id: str) -> bool:
        until = self._revoked.get(session_id)
        return until is not None and until > self._clock.now()

    # --- end store -----------------------------------------------------------------------------

    # --- reading -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return self._with_history(job) if job is not None else None

    async def stats(self, microservice: str, *, count_limit: int | None = None) -> QueueStats:
        check_count_limit(count_limit)
        now = self._clock.now()
        counts = dict.fromkeys(JobStatus, 0)
        oldest: datetime | None = None
        scheduled = 0
        for job in self._jobs.values():
            if job.microservice != microservice:
                continue
            # Like a store's bounded count: jobs past the limit are not counted, so the
            # scheduled count rides on the Ready jobs counted (a lower bound past it).
            counted = count_limit is None or counts[job.status] < count_limit
            if counted:
                counts[job.status] += 1
            if job.status is _READY:
                due = _became_due(job)
                if due > now:
                    scheduled += 1 if counted else 0
                elif oldest is None or due < oldest:
                    oldest = due
        age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else None
        counts, at_least = capped_counts(counts, count_limit)
        return QueueStats(
            counts=counts,
            oldest_ready_age_seconds=age,
            scheduled=scheduled,
            paused_actions=frozenset(self._paused.get(microservice, ())),
            at_least=at_least,
        )

    async def purge(self, microservice: str, older_than_seconds: float) -> int:
        cutoff = self._clock.now() - timedelta(seconds=older_than_seconds)
        doomed = [
            j.id
            for j in self._jobs.values()
            if j.microservice == microservice
            and j.status.is_finished
            and j.finished_at is not None
            and j.finished_at < cutoff
        ]
        for job_id in doomed:
            job = self._jobs.pop(job_id)
            if job.unique_key is not None:
                self._unique.pop((microservice, job.unique_key), None)
            self._heap_seq.pop(job_id, None)
            self._order.pop(job_id, None)
            self._history.pop(job_id, None)
            self._attempt_no.pop(job_id, None)
            self._given_back.discard(job_id)
        return len(doomed)

    # --- the fleet (FleetAdmin) --------------------------------------------------------------

    async def heartbeat_worker(self, record: WorkerRecord) -> None:
        check_worker_record(record)
        seen = dataclasses.replace(record, last_seen_at=self._clock.now(), gone=False)
        self._workers.setdefault(record.microservice, {})[record.worker_id] = seen

    async def remove_worker(self, microservice: str, worker_id: str) -> None:
        self._workers.get(microservice, {}).pop(worker_id, None)

    def _gone(self, microservice: str) -> dict[str, WorkerRecord]:
        now = self._clock.now()
        return {
            worker_id: record
            for worker_id, record in self._workers.get(microservice, {}).items()
            if gone_since(record) < now
        }

    async def list_workers(self, microservice: str) -> list[WorkerRecord]:
        gone = self._gone(microservice)
        records = [
            dataclasses.replace(record, gone=worker_id in gone)
            for worker_id, record in self._workers.get(microservice, {}).items()
        ]
        return sorted(records, key=lambda r: (r.started_at, r.worker_id))

    async def reclaim_gone_workers(self, microservice: str) -> ReclaimResult:
        gone = self._gone(microservice)
        if not gone:
            return ReclaimResult()
        # Their leases end now; what follows is exactly what an expired lease gets.
        ended = self._clock.now() - timedelta(microseconds=1)
        for job_id in self._leased.get(microservice, ()):
            stored = self._jobs[job_id]
            if stored.lease_owner in gone:
                stored.lease_expires_at = ended
        return await self.reclaim_expired(microservice)

    async def forget_gone_workers(self, microservice: str, older_than_seconds: float) -> int:
        cutoff = self._clock.now() - timedelta(seconds=older_than_seconds)
        records = self._workers.get(microservice, {})
        doomed = [
            worker_id
            for worker_id in self._gone(microservice)
            if (seen := records[worker_id].last_seen_at) is not None and seen < cutoff
        ]
        for worker_id in doomed:
            del records[worker_id]
        return len(doomed)

    async def pause_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)
        paused = self._paused.setdefault(microservice, {})
        if action in paused:
            return False
        paused[action] = self._clock.now()
        return True

    async def resume_action(self, microservice: str, action: str) -> bool:
        check_action_name(action)
        paused = self._paused.get(microservice, {})
        if paused.pop(action, None) is None:
            return False
        if not paused:
            self._paused.pop(microservice, None)
        self._notify()  # its waiting jobs may be claimed now
        return True

    async def paused_actions(self, microservice: str) -> dict[str, datetime]:
        return dict(self._paused.get(microservice, {}))


def _became_due(job: Job) -> datetime:
    """When a Ready job became (or becomes) due: ``max(created_at, run_at)``."""
    assert job.created_at is not None
    assert job.run_at is not None
    return max(job.created_at, job.run_at)


def _lease_lost(job: Job, stored: Job | None) -> LeaseLostError:
    """Why a write naming ``job``'s claim is refused: ``stored`` is not under that claim."""
    if stored is None:
        # Purged after another claim finished it: the caller lost it all the same.
        return LeaseLostError(f"job {job.id} is no longer owned by this claim: it no longer exists")
    return LeaseLostError(
        f"job {job.id} is no longer owned by this claim: it is {stored.status} under another claim"
    )


def _never_started(worker_id: str | None) -> str:
    return (
        f"claimed by worker {worker_id} but never confirmed started (the claim's reply was "
        "probably lost); the attempt was given back"
    )


def _check_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name}={value!r} must be a timezone-aware datetime")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _contains(text: str | None, part: str) -> bool:
    """``part`` in ``text``, ASCII letters compared without case (as SQL's lower() does)."""
    return text is not None and part.translate(_ASCII_LOWER) in text.translate(_ASCII_LOWER)
