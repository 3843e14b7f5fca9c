"""``usvc purge --older-than DURATION``: delete finished jobs of a service."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from usvc_core.cli.output import Result, format_age, safe
from usvc_core.cli.values import parse_duration

if TYPE_CHECKING:
    from usvc_core.cli.connect import Session

__all__ = ["add_parser"]


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "purge",
        parents=[common],
        help="delete finished jobs older than a duration",
        description="Delete the service's Completed and Failed jobs that finished more than "
        "DURATION ago (Ready, Assigned and Processing jobs are never touched).",
    )
    p.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="e.g. 7d, 12h, 30m, or seconds; 0 deletes every finished job",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say how many jobs would be deleted; delete none"
    )
    p.set_defaults(handler=purge)


async def _count_purgeable(session: Session, older_than: float) -> int:
    """Finished jobs that finished more than ``older_than`` seconds ago (by this machine's
    clock; the store's may differ by a little)."""
    from usvc_core.jobs import JobStatus
    from usvc_core.ports import JobFilter

    cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
    where = JobFilter(
        microservice=session.service,
        statuses=frozenset({JobStatus.COMPLETED, JobStatus.FAILED}),
        created_before=cutoff,  # it finished before the cutoff, so it was created before
    )
    count, cursor = 0, None
    while True:
        page = await session.admin.list_jobs(where, limit=1000, cursor=cursor)
        count += sum(1 for j in page.jobs if j.finished_at is not None and j.finished_at < cutoff)
        if page.next_cursor is None:
            return count
        cursor = page.next_cursor


async def purge(session: Session, args: argparse.Namespace) -> Result:
    if args.dry_run:
        count = await _count_purgeable(session, args.older_than)
    else:
        count = await session.queue.purge(session.service, args.older_than)
    jobs = f"{count} finished job{'s' if count != 1 else ''}"
    which = f"of {safe(session.service)} older than {format_age(args.older_than)}"
    return Result(
        document={
            "service": session.service,
            "would_purge" if args.dry_run else "purged": count,
            **({"dry_run": True} if args.dry_run else {}),
            "older_than_seconds": args.older_than,
        },
        text=f"would purge {jobs} {which} (dry run: nothing deleted)"
        if args.dry_run
        else f"purged {jobs} {which}",
    )
