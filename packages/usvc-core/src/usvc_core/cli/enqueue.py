"""``usvc enqueue ACTION --data JSON [--wait]``: add a job, optionally wait for its outcome;
``usvc enqueue --jsonl -``: add many jobs, one JSON object per line, in one batch."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usvc_core.cli.exitcodes import CliError, ExitCode
from usvc_core.cli.output import Result, format_age, job_document, pretty_json, safe
from usvc_core.cli.values import (
    parse_attempts,
    parse_data,
    parse_delay,
    parse_positive_duration,
    parse_priority,
)
from usvc_core.errors import DuplicateJobError, UsvcError
from usvc_core.jobs import Job, JobStatus

if TYPE_CHECKING:
    from usvc_core.actions.registry import ActionRegistry
    from usvc_core.cli.connect import Session
    from usvc_core.ports import EnqueueRequest, JobQueue

__all__ = ["DEFAULT_WAIT_SECONDS", "add_parser"]

DEFAULT_WAIT_SECONDS = 60.0
#: First and longest pause between two looks at a waited-for job.
_POLL_FIRST, _POLL_MAX = 0.05, 1.0


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "enqueue",
        parents=[common],
        help="add a job (and wait for its outcome with --wait)",
        description="Add a job for the service's workers; with --wait, wait for its outcome.",
    )
    p.add_argument("action", metavar="ACTION", nargs="?", help="the action to run, e.g. greet")
    p.add_argument(
        "--data",
        type=parse_data,
        default={},
        metavar="JSON",
        help="the job's input as a JSON object, @file.json, or - for stdin (default {})",
    )
    p.add_argument(
        "--jsonl",
        metavar="FILE",
        help="many jobs in one batch: one JSON object per line (each job's input, with its "
        '"action" unless ACTION is given), from FILE or - for stdin',
    )
    p.add_argument("--wait", action="store_true", help="wait until the job finishes")
    p.add_argument(
        "--timeout",
        type=parse_positive_duration,
        metavar="DURATION",
        help=f"with --wait: give up after this long (default {DEFAULT_WAIT_SECONDS:.0f}s)",
    )
    p.add_argument("--priority", type=parse_priority, default=0, help="higher runs first")
    p.add_argument(
        "--delay", type=parse_delay, default=0.0, metavar="DURATION", help="do not run before"
    )
    p.add_argument("--idempotency-key", metavar="KEY", help="unique among unfinished jobs")
    p.add_argument(
        "--max-attempts",
        type=parse_attempts,
        metavar="N",
        help="default: the action's own @action(max_attempts=...), else JOB_MAX_ATTEMPTS, as "
        "for the service's own enqueue (read from --actions-dir)",
    )
    p.add_argument(
        "--actions-dir",
        metavar="PATH",
        help="where the service's actions are, for their max_attempts (default src/actions)",
    )
    p.set_defaults(handler=enqueue)


def _actions(args: argparse.Namespace, notes: list[str]) -> ActionRegistry | None:
    """The service's actions, found as the service finds them, for their own max_attempts;
    None (and a note) when they are not here."""
    from usvc_core.actions.discovery import discover_actions, resolve_actions_dir
    from usvc_core.actions.registry import ActionRegistry

    try:
        directory = resolve_actions_dir(args.actions_dir)
    except Exception as exc:
        raise CliError(f"--actions-dir: {exc}", ExitCode.USAGE) from None
    if directory is None:
        notes.append(
            "no src/actions here, so the service's own max_attempts of its actions are "
            "unknown: JOB_MAX_ATTEMPTS used (run usvc where the service runs, or pass "
            "--actions-dir or --max-attempts)"
        )
        return None
    # The service runs from the directory above src/ (main.py's), so its handlers may
    # import ``src.services...``: give them the same import root.
    root = str(directory.parent.parent) if directory.parent.name == "src" else None
    if root is not None and root not in sys.path:
        sys.path.insert(0, root)
    registry = ActionRegistry()
    try:
        for handler in discover_actions(directory):
            registry.add(handler)
    except UsvcError as exc:
        notes.append(
            f"could not read the service's actions ({' '.join(str(exc).split())[:300]}): "
            "JOB_MAX_ATTEMPTS used (pass --max-attempts to choose)"
        )
        return None
    return registry


def _request(
    session: Session,
    args: argparse.Namespace,
    data: Mapping[str, Any],
    registry: ActionRegistry | None,
    where: str,
) -> EnqueueRequest:
    from usvc_core.ports import EnqueueRequest

    action = args.action or data.get("action")
    if not isinstance(action, str) or not action:
        raise CliError(
            f'{where} names no action: give ACTION, or an "action" string in the object',
            ExitCode.USAGE,
        )
    if "action" in data and data["action"] != action:
        raise CliError(
            f"{where} has action {data['action']!r} but ACTION is {action!r}; "
            "leave action out of it",
            ExitCode.USAGE,
        )
    default = session.settings.JOB_MAX_ATTEMPTS
    max_attempts = args.max_attempts or (
        registry.max_attempts_for(action, default) if registry is not None else default
    )
    return EnqueueRequest(
        payload={**data, "action": action},
        microservice=session.service,
        priority=args.priority,
        delay_seconds=args.delay,
        max_attempts=max_attempts,
        idempotency_key=args.idempotency_key,
    )


def _jsonl(source: str) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file (``-``: stdin); blank lines are skipped."""
    if source == "-":
        text, name = sys.stdin.read(), "stdin"
    else:
        try:
            text, name = Path(source).read_text(encoding="utf-8"), source
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {source}: {exc}", ExitCode.USAGE) from None
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(
                f"{name} line {number} is not valid JSON ({exc.msg}); nothing was enqueued",
                ExitCode.USAGE,
            ) from None
        if not isinstance(value, dict):
            raise CliError(
                f"{name} line {number} must be a JSON object (a job's input); nothing was enqueued",
                ExitCode.USAGE,
            )
        objects.append(value)
    if not objects:
        raise CliError(f"{name} holds no jobs (one JSON object per line)", ExitCode.USAGE)
    return objects


async def enqueue(session: Session, args: argparse.Namespace) -> Result:
    queue = session.queue
    if args.timeout is not None and not args.wait:
        raise CliError("--timeout goes with --wait", ExitCode.USAGE)
    if args.jsonl is not None:
        return await _enqueue_many(session, args)
    if args.action is None:
        raise CliError("give the ACTION to run (or --jsonl FILE)", ExitCode.USAGE)
    notes: list[str] = []
    registry = None if args.max_attempts else _actions(args, notes)
    request = _request(session, args, args.data, registry, "--data")
    try:
        job = await queue.enqueue(request)
    except DuplicateJobError as exc:
        raise CliError(str(exc)) from None
    if not args.wait:
        return Result(
            document={"job": job_document(job)},
            text=f"enqueued job {safe(job.id)} ({safe(job.action)}, {job.status.value})",
            notes=notes,
        )
    timeout = args.timeout if args.timeout is not None else DEFAULT_WAIT_SECONDS
    done = await _wait(queue, job, timeout)
    result = _outcome(done or job, timeout, finished=done is not None)
    return replace(result, notes=[*result.notes, *notes])


async def _enqueue_many(session: Session, args: argparse.Namespace) -> Result:
    for option in ("wait", "idempotency_key"):
        if getattr(args, option):
            flag = "--" + option.replace("_", "-")
            raise CliError(f"{flag} goes with one job, not with --jsonl", ExitCode.USAGE)
    if args.data:
        raise CliError("--data goes with one job; with --jsonl each line is one", ExitCode.USAGE)
    objects = _jsonl(args.jsonl)
    notes: list[str] = []
    registry = None if args.max_attempts else _actions(args, notes)
    source = "stdin" if args.jsonl == "-" else args.jsonl
    requests = [
        _request(session, args, data, registry, f"{source} line {number}")
        for number, data in enumerate(objects, 1)
    ]
    jobs = await session.queue.enqueue_many(requests)
    lines = [f"enqueued job {safe(j.id)} ({safe(j.action)}, {j.status.value})" for j in jobs]
    return Result(
        document={"jobs": [job_document(j) for j in jobs]},
        text="\n".join([*lines, f"enqueued {len(jobs)} job{'s' if len(jobs) != 1 else ''}"]),
        notes=notes,
    )


async def _wait(queue: JobQueue, job: Job, patience: float) -> Job | None:
    """The job once finished, or None when ``patience`` seconds run out first (polling:
    the ports have no completion notice across processes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause = _POLL_FIRST
    while True:
        current = await queue.get(job.id)
        if current is None:
            raise CliError(f"job {safe(job.id)} disappeared while waiting (purged?)")
        if current.status.is_finished:
            return current
        left = deadline - loop.time()
        if left <= 0:
            return None
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX)


def _outcome(job: Job, timeout: float, *, finished: bool) -> Result:
    document = {"job": job_document(job)}
    if not finished:
        return Result(
            document=document,
            text=f"job {safe(job.id)} is still {job.status.value}",
            code=ExitCode.WAIT_TIMEOUT,
            error=f"job {safe(job.id)} did not finish within {format_age(timeout)}; it goes on: "
            f"usvc jobs show {safe(job.id)}",
        )
    runtime = f" in {job.runtime_ms:.1f} ms" if job.runtime_ms is not None else ""
    if job.status is JobStatus.COMPLETED:
        return Result(
            document=document,
            text=f"job {safe(job.id)} Completed{runtime}\n{pretty_json(job.results)}",
        )
    error = f"{job.error_code}: {job.error_message}"
    return Result(
        document=document,
        text=f"job {safe(job.id)} Failed{runtime}",
        code=ExitCode.JOB_FAILED,
        error=f"job {safe(job.id)} failed: {safe(error)}",
    )
