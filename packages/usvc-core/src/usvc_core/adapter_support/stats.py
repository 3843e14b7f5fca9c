"""The bounded counts of ``JobQueue.stats(..., count_limit=n)``, the same for every adapter."""

from __future__ import annotations

from collections.abc import Mapping

from usvc_core.jobs import JobStatus

__all__ = ["capped_counts", "check_count_limit"]


def check_count_limit(count_limit: int | None) -> None:
    if count_limit is None:
        return
    if isinstance(count_limit, bool) or not isinstance(count_limit, int) or count_limit < 1:
        raise ValueError(f"count_limit={count_limit!r}: counts stop at 1 or more (None: exact)")


def capped_counts(
    counts: Mapping[JobStatus, int], count_limit: int | None
) -> tuple[dict[JobStatus, int], frozenset[JobStatus]]:
    """``counts`` (every status, each read up to the limit or beyond) cut at ``count_limit``,
    and the statuses that reached it (``QueueStats.at_least``): a count equal to the limit
    may hide more jobs, so it is a lower bound too."""
    if count_limit is None:
        return {status: counts.get(status, 0) for status in JobStatus}, frozenset()
    cut = {status: min(counts.get(status, 0), count_limit) for status in JobStatus}
    return cut, frozenset(status for status, count in cut.items() if count >= count_limit)
