"""``usvc purge --older-than DURATION``: delete finished jobs of a service."""

from __future__ import annotations

import argparse
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
    p.set_defaults(handler=purge)


async def purge(session: Session, args: argparse.Namespace) -> Result:
    count = await session.queue.purge(session.service, args.older_than)
    return Result(
        document={
            "service": session.service,
            "purged": count,
            "older_than_seconds": args.older_than,
        },
        text=f"purged {count} finished job{'s' if count != 1 else ''} of "
        f"{safe(session.service)} older than {format_age(args.older_than)}",
    )
