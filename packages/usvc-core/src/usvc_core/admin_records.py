"""The records of the operator port (:class:`usvc_core.ports.QueueAdmin`): what the CLI,
the admin API and the dashboard pass to a store and get back. Re-exported by
:mod:`usvc_core.ports`, which imports this module on first use: a worker never makes them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from usvc_core.jobs import Job, JobStatus

__all__ = ["JobFilter", "JobPage", "MinuteActivity", "QueueActivity"]


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs of one service an operator looks at; empty sets match everything."""

    microservice: str
    statuses: frozenset[JobStatus] = frozenset()
    actions: frozenset[str] = frozenset()
    error_codes: frozenset[str] = frozenset()
    created_after: datetime | None = None  #: inclusive
    created_before: datetime | None = None  #: exclusive
    # --- store: more filters (issue 21 items 2 and 5) ----------------------------------------
    #: True: only *scheduled* jobs (Ready, ``run_at`` in the future on the store's clock);
    #: False: no scheduled job (with ``statuses={READY}``: the due jobs); None: both
    scheduled: bool | None = None
    #: text the error message contains (case-insensitive for ASCII letters)
    error_text: str | None = None
    # --- end store ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of :meth:`QueueAdmin.list_jobs`, newest first. ``next_cursor`` is opaque:
    pass it back for the next page; None on the last page. A page may hold fewer than
    ``limit`` jobs and still have a cursor: an adapter may bound the work of one call (the
    SQLite queue's search for text in error messages does) and go on from there."""

    jobs: Sequence[Job]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class MinuteActivity:
    """Jobs of one service that finished within one minute (``minute``: its UTC start)."""

    minute: datetime
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class QueueActivity:
    """What an operator's dashboard shows for one service."""

    #: action -> status -> number of jobs (actions with no jobs are absent)
    counts: Mapping[str, Mapping[JobStatus, int]]
    #: action -> age in seconds of its oldest due Ready job (actions with none are absent)
    oldest_ready_age_seconds: Mapping[str, float]
    #: one entry per minute of the window, oldest first, the current minute last
    per_minute: Sequence[MinuteActivity]
    # --- store: scheduled jobs (issue 21 item 2) ---------------------------------------------
    #: action -> Ready jobs not due yet (counted in ``counts`` as Ready too; absent: none)
    scheduled: Mapping[str, int] = field(default_factory=dict)
    # --- end store ---------------------------------------------------------------------------
