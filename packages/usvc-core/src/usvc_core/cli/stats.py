"""``usvc stats``: queue depth by status and action, oldest Ready age, recent throughput."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from usvc_core.cli.output import Result, format_age, safe, table
from usvc_core.cli.values import parse_minutes
from usvc_core.jobs import JobStatus

if TYPE_CHECKING:
    from usvc_core.cli.connect import Session

__all__ = ["add_parser"]


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "stats",
        parents=[common],
        help="counts by status and action, oldest Ready age, recent throughput",
        description="Jobs by status and action, the oldest Ready job's age, and the jobs "
        "completed and failed over the last minutes.",
    )
    p.add_argument(
        "--minutes",
        type=parse_minutes,
        default=60,
        help="the throughput window, 1-1440 minutes (default 60)",
    )
    p.set_defaults(handler=stats)


async def stats(session: Session, args: argparse.Namespace) -> Result:
    queue, service = session.admin, session.service
    depth = await queue.stats(service)
    activity = await queue.activity(service, minutes=args.minutes)
    counts = {s.value: int(depth.counts.get(s, 0)) for s in JobStatus}
    by_action = {
        action: {s.value: int(per.get(s, 0)) for s in JobStatus}
        for action, per in sorted(activity.counts.items())
    }
    completed = sum(m.completed for m in activity.per_minute)
    failed = sum(m.failed for m in activity.per_minute)
    document = {
        "service": service,
        "counts": counts,
        "total": sum(counts.values()),
        "oldest_ready_age_seconds": depth.oldest_ready_age_seconds,
        "paused_actions": sorted(depth.paused_actions),
        "scheduled": depth.scheduled,
        "actions": {
            action: {
                "counts": per,
                "oldest_ready_age_seconds": activity.oldest_ready_age_seconds.get(action),
                "scheduled": activity.scheduled.get(action, 0),
            }
            for action, per in by_action.items()
        },
        "window_minutes": args.minutes,
        "completed": completed,
        "failed": failed,
        "per_minute": [
            {"minute": m.minute.isoformat(), "completed": m.completed, "failed": m.failed}
            for m in activity.per_minute
        ],
    }
    statuses = [s.value for s in JobStatus]
    numbers = range(1, len(statuses) + 1)
    lines = [
        f"service {safe(service)}: {document['total']} jobs",
        "",
        table(("STATUS", "JOBS"), list(counts.items()), right=(1,)),
    ]
    if by_action:
        rows = [
            (
                action,
                *(per[s] for s in statuses),
                format_age(activity.oldest_ready_age_seconds.get(action)),
            )
            for action, per in by_action.items()
        ]
        headers = ("ACTION", *(s.upper() for s in statuses), "OLDEST READY")
        lines += ["", table(headers, rows, right=tuple(numbers))]
    lines += [
        "",
        f"oldest Ready job: {format_age(depth.oldest_ready_age_seconds)} (due jobs only, "
        "counted from when each became due)",
        f"scheduled for later: {depth.scheduled} of the Ready jobs",
        f"last {args.minutes} min: {completed} completed, {failed} failed",
    ]
    if depth.paused_actions:  # their jobs wait Ready until resumed
        lines.append(f"paused: {', '.join(safe(a) for a in sorted(depth.paused_actions))}")
    return Result(document=document, text="\n".join(lines))
