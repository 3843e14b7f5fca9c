"""``usvc enqueue ACTION --data JSON [--wait]``: add a job, optionally wait for its outcome."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from usvc_core.cli.exitcodes import CliError, ExitCode
from usvc_core.cli.output import Result, format_age, job_document, pretty_json, safe
from usvc_core.cli.values import (
    parse_attempts,
    parse_data,
    parse_duration,
    parse_positive_duration,
    parse_priority,
)
from usvc_core.errors import DuplicateJobError
from usvc_core.jobs import Job, JobStatus

if TYPE_CHECKING:
    from usvc_core.cli.connect import Session
    from usvc_core.ports import JobQueue

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
    p.add_argument("action", metavar="ACTION", help="the action to run, e.g. greet")
    p.add_argument(
        "--data",
        type=parse_data,
        default={},
        metavar="JSON",
        help="the job's input as a JSON object, @file.json, or - for stdin (default {})",
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
        "--delay", type=parse_duration, default=0.0, metavar="DURATION", help="do not run before"
    )
    p.add_argument("--idempotency-key", metavar="KEY", help="unique among unfinished jobs")
    p.add_argument(
        "--max-attempts", type=parse_attempts, metavar="N", help="default JOB_MAX_ATTEMPTS"
    )
    p.set_defaults(handler=enqueue)


async def enqueue(session: Session, args: argparse.Namespace) -> Result:
    queue, service = session.queue, session.service
    if args.timeout is not None and not args.wait:
        raise CliError("--timeout goes with --wait", ExitCode.USAGE)
    if "action" in args.data and args.data["action"] != args.action:
        raise CliError(
            f"--data has action {args.data['action']!r} but ACTION is {args.action!r}; "
            "leave action out of --data",
            ExitCode.USAGE,
        )
    from usvc_core.ports import EnqueueRequest

    max_attempts = args.max_attempts or session.settings.JOB_MAX_ATTEMPTS
    request = EnqueueRequest(
        payload={**args.data, "action": args.action},
        microservice=service,
        priority=args.priority,
        delay_seconds=args.delay,
        max_attempts=max_attempts,
        idempotency_key=args.idempotency_key,
    )
    try:
        job = await queue.enqueue(request)
    except DuplicateJobError as exc:
        holder = f" (job {exc.existing_job_id})" if exc.existing_job_id else ""
        raise CliError(f"{exc}{holder}") from None
    if not args.wait:
        return Result(
            document={"job": job_document(job)},
            text=f"enqueued job {safe(job.id)} ({safe(job.action)}, {job.status.value})",
        )
    timeout = args.timeout if args.timeout is not None else DEFAULT_WAIT_SECONDS
    done = await _wait(queue, job, timeout)
    return _outcome(done or job, timeout, finished=done is not None)


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
