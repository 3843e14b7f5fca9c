"""TEMPORARY: QueueAdmin on top of InMemoryQueue until the store branch lands the real one."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from usvc_core.errors import JobNotFoundError
from usvc_core.jobs import ErrorCode, Job, JobStatus
from usvc_core.ports import JobFilter, JobPage, MinuteActivity, QueueActivity
from usvc_testing.queues import InMemoryQueue

__all__ = ["AdminMemoryQueue"]


class AdminMemoryQueue(InMemoryQueue):
    def _match(self, j: Job, w: JobFilter) -> bool:
        return (
            j.microservice == w.microservice
            and (not w.statuses or j.status in w.statuses)
            and (not w.actions or j.action in w.actions)
            and (not w.error_codes or j.error_code in w.error_codes)
            and (w.created_after is None or (j.created_at and j.created_at >= w.created_after))
            and (w.created_before is None or (j.created_at and j.created_at < w.created_before))
        )

    async def list_jobs(
        self, where: JobFilter, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        jobs = sorted(
            (j for j in self._jobs.values() if self._match(j, where)),
            key=lambda j: (j.created_at, j.id),
            reverse=True,
        )
        if cursor is not None:
            try:
                after = base64.urlsafe_b64decode(cursor.encode()).decode()
                idx = [j.id for j in jobs].index(after) + 1
            except Exception as exc:
                raise ValueError(f"malformed cursor {cursor!r}") from exc
            jobs = jobs[idx:]
        page = jobs[:limit]
        nxt = base64.urlsafe_b64encode(page[-1].id.encode()).decode() if len(jobs) > limit else None
        return JobPage([j.snapshot() for j in page], nxt)

    async def retry_failed(
        self, microservice: str, job_ids: Sequence[str] = (), where: JobFilter | None = None
    ) -> int:
        n = 0
        for j in list(self._jobs.values()):
            if j.microservice != microservice or j.status is not JobStatus.FAILED:
                continue
            if (job_ids and j.id in job_ids) or (where is not None and self._match(j, where)):
                j.attempts = 0
                j.error_code = j.error_message = None
                j.finished_at = None
                self._requeue(j, 0)
                n += 1
        return n

    async def cancel(self, microservice: str, job_id: str) -> JobStatus:
        j = self._jobs.get(job_id)
        if j is None or j.microservice != microservice:
            raise JobNotFoundError(job_id)
        if j.status in (JobStatus.READY, JobStatus.ASSIGNED):
            j.error_code, j.error_message = ErrorCode.CANCELLED, "cancelled by an operator"
            self._finish(j, JobStatus.FAILED, None)
        elif j.status is JobStatus.PROCESSING:
            j.cancel_requested = True
        return j.status

    async def activity(self, microservice: str, *, minutes: int = 60) -> QueueActivity:
        counts: dict[str, dict[JobStatus, int]] = defaultdict(dict)
        oldest: dict[str, float] = {}
        now = self._clock.now()
        for j in self._jobs.values():
            if j.microservice != microservice:
                continue
            counts[j.action][j.status] = counts[j.action].get(j.status, 0) + 1
            if j.status is JobStatus.READY and j.created_at:
                age = (now - j.created_at).total_seconds()
                oldest[j.action] = max(oldest.get(j.action, 0.0), age)
        start = now.replace(second=0, microsecond=0)
        per = []
        for i in range(minutes - 1, -1, -1):
            m = start - timedelta(minutes=i)
            done = [
                j
                for j in self._jobs.values()
                if j.microservice == microservice
                and j.finished_at
                and m <= j.finished_at < m + timedelta(minutes=1)
            ]
            per.append(
                MinuteActivity(
                    m,
                    sum(j.status is JobStatus.COMPLETED for j in done),
                    sum(j.status is JobStatus.FAILED for j in done),
                )
            )
        return QueueActivity(dict(counts), oldest, per)
