"""``usvc workers ls`` and ``usvc actions ls|pause|resume``: the service's worker processes
as their heartbeats recorded them, and its actions, paused across the fleet or not."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from usvc_core.cli.exitcodes import CliError, ExitCode
from usvc_core.cli.output import Result, format_time, safe, table
from usvc_core.jobs import JobStatus

if TYPE_CHECKING:
    # Not at import: ``usvc --help`` must not pay for the settings and the ports.
    from usvc_core.cli.connect import Session
    from usvc_core.ports import FleetAdmin

__all__ = ["add_parser"]

_RUNNING = (JobStatus.ASSIGNED, JobStatus.PROCESSING)


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    workers = commands.add_parser(
        "workers",
        help="the service's worker processes (from their heartbeats)",
        description="The worker processes of the service, as each one's heartbeat recorded "
        "it in the job store; a worker silent for two heartbeats is gone (its jobs went "
        "back to Ready).",
    )
    workers_commands = workers.add_subparsers(
        dest="workers_command", metavar="COMMAND", required=True
    )
    ls = workers_commands.add_parser("ls", parents=[common], help="list the worker processes")
    ls.set_defaults(handler=list_workers)

    actions = commands.add_parser(
        "actions",
        help="the service's actions; pause and resume one across the fleet",
        description="The service's actions (those with jobs, paused, or handled by a live "
        "worker). A paused action's jobs stay Ready and no worker claims them until it is "
        "resumed; jobs already running finish.",
    )
    actions_commands = actions.add_subparsers(
        dest="actions_command", metavar="COMMAND", required=True
    )
    ls = actions_commands.add_parser(
        "ls", parents=[common], help="list actions: jobs waiting and running, paused or not"
    )
    ls.set_defaults(handler=list_actions)
    for name, handler, what in (
        ("pause", pause, "stop every worker from claiming the action's jobs"),
        ("resume", resume, "let workers claim the action's jobs again"),
    ):
        p = actions_commands.add_parser(name, parents=[common], help=what, description=what)
        p.add_argument("action", help="the action's name")
        p.set_defaults(handler=handler)


def _fleet(session: Session) -> FleetAdmin:
    from usvc_core.ports import FleetAdmin

    queue = session.queue
    if not isinstance(queue, FleetAdmin):
        raise CliError(
            f"the queue {type(queue).__name__} does not implement FleetAdmin (worker "
            "records, paused actions); upgrade its package",
            ExitCode.USAGE,
        )
    return queue


async def list_workers(session: Session, args: argparse.Namespace) -> Result:
    records = await _fleet(session).list_workers(session.service)
    document = {
        "service": session.service,
        "workers": [
            {
                "worker_id": r.worker_id,
                "host": r.host,
                "pid": r.pid,
                "version": r.version,
                "started_at": r.started_at.isoformat(),
                "last_seen_at": r.last_seen_at.isoformat() if r.last_seen_at else None,
                "heartbeat_seconds": r.heartbeat_seconds,
                "gone": r.gone,
                "actions": list(r.actions),
                "concurrency": r.concurrency,
                "running": r.running,
            }
            for r in records
        ],
    }
    if not records:
        return Result(document=document, text=f"no worker of {safe(session.service)} recorded")
    rows = [
        (
            r.worker_id,
            "gone" if r.gone else "live",
            r.host,
            r.pid,
            r.version,
            format_time(r.started_at),
            format_time(r.last_seen_at),
            f"{r.running}/{r.concurrency}",
            ", ".join(r.actions),
        )
        for r in records
    ]
    headers = ("WORKER", "STATE", "HOST", "PID", "VERSION", "STARTED", "LAST SEEN", "JOBS")
    live = sum(not r.gone for r in records)
    text = "\n".join(
        [
            f"service {safe(session.service)}: {live} live, {len(records) - live} gone",
            "",
            table((*headers, "ACTIONS"), rows, right=(3, 7)),
        ]
    )
    return Result(document=document, text=text)


async def list_actions(session: Session, args: argparse.Namespace) -> Result:
    service = session.service
    fleet = _fleet(session)
    paused = await fleet.paused_actions(service)
    counts = (await session.admin.activity(service, minutes=1)).counts
    handled = {a for r in await fleet.list_workers(service) if not r.gone for a in r.actions}
    names = sorted({*counts, *paused, *handled})
    entries = [
        {
            "action": name,
            "paused": name in paused,
            "paused_at": paused[name].isoformat() if name in paused else None,
            "ready": int(counts.get(name, {}).get(JobStatus.READY, 0)),
            "running": sum(int(counts.get(name, {}).get(s, 0)) for s in _RUNNING),
            "live_workers_handle_it": name in handled,
        }
        for name in names
    ]
    document = {"service": service, "actions": entries}
    if not entries:
        return Result(document=document, text=f"no action of {safe(service)} known yet")
    rows = [
        (
            e["action"],
            e["ready"],
            e["running"],
            f"paused since {format_time(paused[str(e['action'])])}" if e["paused"] else "-",
        )
        for e in entries
    ]
    text = table(("ACTION", "READY", "RUNNING", "PAUSED"), rows, right=(1, 2))
    return Result(document=document, text=text)


async def pause(session: Session, args: argparse.Namespace) -> Result:
    changed = await _fleet(session).pause_action(session.service, args.action)
    return _paused_result(session, args.action, paused=True, changed=changed)


async def resume(session: Session, args: argparse.Namespace) -> Result:
    changed = await _fleet(session).resume_action(session.service, args.action)
    return _paused_result(session, args.action, paused=False, changed=changed)


def _paused_result(session: Session, action: str, *, paused: bool, changed: bool) -> Result:
    state = "paused" if paused else "resumed"
    if changed:
        text = f"{state} {safe(action)} across every worker of {safe(session.service)}"
        if paused:
            text += " (running jobs finish; waiting jobs stay Ready)"
    else:
        text = f"{safe(action)} was paused already" if paused else f"{safe(action)} was not paused"
    return Result(
        document={
            "service": session.service,
            "action": action,
            "paused": paused,
            "changed": changed,
        },
        text=text,
    )
