"""``usvc jobs ls|show|retry|cancel``: look at a service's jobs and act on them."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from usvc_core.cli.exitcodes import CliError, ExitCode
from usvc_core.cli.output import (
    Result,
    format_time,
    job_document,
    pretty_json,
    safe,
    table,
)
from usvc_core.cli.values import (
    parse_error_codes,
    parse_limit,
    parse_statuses,
    parse_when,
)
from usvc_core.jobs import ErrorCode, Job, JobStatus

if TYPE_CHECKING:
    from usvc_core.cli.connect import AdminQueue, Session
    from usvc_core.ports import JobFilter

__all__ = ["add_parser"]


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    jobs = commands.add_parser(
        "jobs", help="list, show, retry and cancel jobs", description="Jobs of one service."
    )
    sub = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)

    ls = sub.add_parser(
        "ls",
        parents=[common],
        help="list jobs, newest first",
        description="List the service's jobs, newest first, one page at a time.",
    )
    _add_filters(ls, statuses=True)
    ls.add_argument(
        "--limit", type=parse_limit, default=50, help="jobs per page, 1-1000 (default 50)"
    )
    ls.add_argument("--cursor", help="the next page: the cursor the previous page printed")
    ls.set_defaults(handler=list_jobs)

    show = sub.add_parser(
        "show",
        parents=[common],
        help="one job with its payload, result and error",
        description="Show one job with its payload, result and error.",
    )
    show.add_argument("job_id", metavar="ID")
    show.set_defaults(handler=show_job)

    retry = sub.add_parser(
        "retry",
        parents=[common],
        help="put Failed jobs back to Ready with fresh attempts",
        description="Put Failed jobs back to Ready, due now, with fresh attempts: the given "
        "ids, or with --all-failed every Failed job matching the filters.",
    )
    retry.add_argument("job_ids", metavar="ID", nargs="*")
    retry.add_argument(
        "--all-failed",
        action="store_true",
        help="every Failed job matching the filters, except CANCELLED ones",
    )
    retry.add_argument(
        "--include-cancelled",
        action="store_true",
        help="with --all-failed: jobs an operator cancelled too",
    )
    retry.add_argument(
        "--dry-run", action="store_true", help="say how many jobs would be retried; change nothing"
    )
    _add_filters(retry, statuses=False)
    retry.set_defaults(handler=retry_jobs)

    cancel = sub.add_parser(
        "cancel",
        parents=[common],
        help="cancel Ready/Assigned jobs, or ask Processing ones to stop",
        description="Cancel jobs: a Ready or Assigned job fails at once with CANCELLED; a "
        "Processing job's worker stops its handler at its next lease renewal.",
    )
    cancel.add_argument("job_ids", metavar="ID", nargs="+")
    cancel.set_defaults(handler=cancel_jobs)


def _add_filters(parser: argparse.ArgumentParser, *, statuses: bool) -> None:
    if statuses:
        parser.add_argument(
            "--status",
            dest="statuses",
            action="extend",
            type=parse_statuses,
            metavar="STATUS",
            help="Ready, Assigned, Processing, Completed or Failed (repeat or comma-separate)",
        )
        parser.add_argument(  # store: the derived status (issue 21 item 2)
            "--scheduled",
            action="store_true",
            help="only Ready jobs that are not due yet (run at in the future)",
        )
        parser.add_argument(
            "--error-text", metavar="TEXT", help="text in the error message (any case)"
        )
    parser.add_argument(
        "--action", dest="actions", action="append", metavar="ACTION", help="(repeatable)"
    )
    parser.add_argument(
        "--error-code",
        dest="error_codes",
        action="extend",
        type=parse_error_codes,
        metavar="CODE",
        help="e.g. HANDLER_ERROR, TIMEOUT (repeat or comma-separate)",
    )
    parser.add_argument(
        "--since",
        type=parse_when,
        metavar="WHEN",
        help="created at or after: ISO 8601 (UTC unless an offset is given) or a duration ago (2h)",
    )
    parser.add_argument(
        "--until", type=parse_when, metavar="WHEN", help="created before (same forms as --since)"
    )


def _filter(service: str, args: argparse.Namespace, statuses: frozenset[JobStatus]) -> JobFilter:
    from usvc_core.ports import JobFilter

    if args.since is not None and args.until is not None and args.since >= args.until:
        raise CliError("--since must be earlier than --until", ExitCode.USAGE)
    return JobFilter(
        microservice=service,
        statuses=statuses,
        actions=frozenset(args.actions or ()),
        error_codes=frozenset(args.error_codes or ()),
        created_after=args.since,
        created_before=args.until,
        scheduled=True if getattr(args, "scheduled", False) else None,
        error_text=getattr(args, "error_text", None) or None,
    )


def _error(job: Job) -> str:
    if job.error_code is None:
        return "cancel requested" if job.cancel_requested else ""
    return f"{job.error_code}: {job.error_message or ''}".rstrip(": ")


async def list_jobs(session: Session, args: argparse.Namespace) -> Result:
    queue, service = session.admin, session.service
    where = _filter(service, args, frozenset(args.statuses or ()))
    try:
        page = await queue.list_jobs(where, limit=args.limit, cursor=args.cursor)
    except ValueError as exc:
        if args.cursor is None:  # only a cursor is the operator's to fix
            raise
        raise CliError(f"invalid --cursor: {exc}", ExitCode.USAGE) from None
    now = datetime.now(UTC)
    rows = [
        (
            j.id,
            j.action,
            j.shown_status(now),
            f"{j.attempts}/{j.max_attempts}",
            format_time(j.created_at),
            _error(j),
        )
        for j in page.jobs
    ]
    lines = [
        table(("ID", "ACTION", "STATUS", "ATTEMPTS", "CREATED", "ERROR"), rows)
        if rows
        else f"no jobs of {safe(service)} match"
    ]
    if page.next_cursor is not None:
        lines.append(f"next page: --cursor {safe(page.next_cursor)}")
    return Result(
        document={
            "service": service,
            "jobs": [job_document(j) for j in page.jobs],
            "next_cursor": page.next_cursor,
        },
        text="\n".join(lines),
    )


async def _job_of_service(queue: AdminQueue, service: str, job_id: str) -> Job:
    job = await queue.get(job_id)
    if job is None:
        raise CliError(f"job {safe(job_id)} not found")
    if job.microservice != service:
        raise CliError(
            f"job {safe(job_id)} belongs to service {safe(job.microservice)}, not "
            f"{safe(service)}; pass --service {safe(job.microservice)}"
        )
    return job


async def show_job(session: Session, args: argparse.Namespace) -> Result:
    job = await session.queue.get(args.job_id)
    if job is None:
        raise CliError(f"job {safe(args.job_id)} not found")
    now = datetime.now(UTC)  # store: a Ready job not due yet shows as Scheduled
    fields: list[tuple[str, Any]] = [
        ("id", job.id),
        ("service", job.microservice),
        ("action", job.action),
        ("status", job.shown_status(now) + (" (cancel requested)" if job.cancel_requested else "")),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("token", job.token),
        ("idempotency key", job.idempotency_key),
        ("unique key", job.unique_key),
        ("created", format_time(job.created_at)),
        ("run at", format_time(job.run_at)),
        ("started", format_time(job.started_at)),
        ("finished", format_time(job.finished_at)),
        ("runtime", f"{job.runtime_ms:.1f} ms" if job.runtime_ms is not None else None),
        (
            "lease",
            f"{job.lease_owner} until {format_time(job.lease_expires_at)}"
            if job.lease_owner and job.status in (JobStatus.ASSIGNED, JobStatus.PROCESSING)
            else None,
        ),
        ("error", _error(job) or None),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.ljust(width)}  {safe(str('-' if v is None else v))}" for name, v in fields]
    if job.payload_error is not None:
        lines.append(f"{'payload error'.ljust(width)}  {safe(job.payload_error)}")
    # --- store: every attempt, oldest first (issue 21 item 1)
    attempts = [
        (
            str(a.number),
            a.worker_id or "-",
            format_time(a.started_at),
            format_time(a.finished_at),
            a.outcome.value,
            f"{a.error_code}: {a.error_message}" if a.error_code else "",
        )
        for a in job.attempt_history
    ]
    if attempts:
        lines.append("attempts:")
        headers = ("#", "WORKER", "STARTED", "ENDED", "OUTCOME", "ERROR")
        lines.extend("  " + line for line in table(headers, attempts).splitlines())
    # --- end store
    for title, value in (("payload", job.payload), ("results", job.results)):
        lines.append(f"{title}:")
        lines.extend("  " + line for line in pretty_json(value).splitlines())
    document = {
        **job_document(job),
        "scheduled": job.is_scheduled(now),
        "attempt_history": [
            {
                "number": a.number,
                "worker_id": a.worker_id,
                "started_at": a.started_at.isoformat() if a.started_at else None,
                "finished_at": a.finished_at.isoformat() if a.finished_at else None,
                "outcome": a.outcome.value,
                "error_code": a.error_code,
                "error_message": a.error_message,
            }
            for a in job.attempt_history
        ],
    }
    return Result(document={"job": document}, text="\n".join(lines))


async def count_matching(queue: AdminQueue, where: JobFilter) -> int:
    """How many jobs match ``where`` (pages of 1000 through the operator's port)."""
    count, cursor = 0, None
    while True:
        page = await queue.list_jobs(where, limit=1000, cursor=cursor)
        count += len(page.jobs)
        if page.next_cursor is None:
            return count
        cursor = page.next_cursor


def _retry_filter(service: str, args: argparse.Namespace) -> JobFilter:
    where = _filter(service, args, frozenset({JobStatus.FAILED}))
    if args.include_cancelled or args.error_codes:
        return where  # asked: the codes given (CANCELLED among them or not), or all
    # A cancelled job was stopped on purpose: retrying "all failed" must not undo that.
    codes = frozenset(c.value for c in ErrorCode if c is not ErrorCode.CANCELLED)
    return replace(where, error_codes=codes)


async def retry_jobs(session: Session, args: argparse.Namespace) -> Result:
    queue, service = session.admin, session.service
    if args.all_failed and args.job_ids:
        raise CliError("give job ids or --all-failed, not both", ExitCode.USAGE)
    if not args.all_failed and not args.job_ids:
        raise CliError("give the ids of the jobs to retry, or --all-failed", ExitCode.USAGE)
    if args.include_cancelled and not args.all_failed:
        raise CliError("--include-cancelled goes with --all-failed", ExitCode.USAGE)
    skipped: list[dict[str, str]] = []
    if args.all_failed:
        where = _retry_filter(service, args)
        if args.dry_run:
            count = await count_matching(queue, where)
        else:
            count = await queue.retry_failed(service, where=where)
    else:
        if args.actions or args.error_codes or args.since or args.until:
            raise CliError("filters go with --all-failed, not with job ids", ExitCode.USAGE)
        failed = []
        for job_id in dict.fromkeys(args.job_ids):
            job = await queue.get(job_id)
            if job is None:
                skipped.append({"id": job_id, "reason": "not found"})
            elif job.microservice != service:
                skipped.append({"id": job_id, "reason": f"belongs to {job.microservice}"})
            elif job.status is not JobStatus.FAILED:
                skipped.append({"id": job_id, "reason": f"{job.status.value}, not Failed"})
            else:
                failed.append(job_id)
        if args.dry_run:
            count = len(failed)
        else:
            count = await queue.retry_failed(service, failed) if failed else 0
    jobs = f"{count} job{'s' if count != 1 else ''}"
    text = f"would retry {jobs} (dry run: nothing changed)" if args.dry_run else f"retried {jobs}"
    notes = [f"not retried: {safe(s['id'])} ({safe(s['reason'])})" for s in skipped]
    key = "would_retry" if args.dry_run else "retried"
    return Result(
        document={key: count, "skipped": skipped, **({"dry_run": True} if args.dry_run else {})},
        text=text,
        code=ExitCode.FAILED if skipped else ExitCode.OK,
        error=f"{len(skipped)} of the given jobs not retried" if skipped else None,
        notes=notes,
    )


async def _cancel_one(queue: AdminQueue, service: str, job_id: str) -> dict[str, Any]:
    """One job's cancellation: its outcome, and the line that tells it."""
    try:
        before = await _job_of_service(queue, service, job_id)
    except CliError as exc:
        return {"id": job_id, "outcome": "not_cancelled", "message": str(exc)}
    if before.status.is_finished:
        outcome, after = "already_finished", before
    else:
        await queue.cancel(service, before.id)
        after = await queue.get(before.id) or before
        if after.status is JobStatus.FAILED and after.error_code == ErrorCode.CANCELLED:
            outcome = "cancelled"
        elif not after.status.is_finished:
            outcome = "cancel_requested"
        else:
            outcome = "already_finished"  # it finished on its own meanwhile
    texts = {
        "cancelled": f"cancelled job {safe(after.id)} ({before.status.value} -> Failed CANCELLED)",
        "cancel_requested": f"asked the worker running job {safe(after.id)} to stop it "
        "(it records CANCELLED at its next lease renewal)",
        "already_finished": f"nothing to cancel: job {safe(after.id)} is already "
        f"{after.status.value}",
    }
    return {
        "id": after.id,
        "outcome": outcome,
        "previous_status": before.status.value,
        "job": job_document(after),
        "message": texts[outcome],
    }


async def cancel_jobs(session: Session, args: argparse.Namespace) -> Result:
    queue, service = session.admin, session.service
    results = [await _cancel_one(queue, service, i) for i in dict.fromkeys(args.job_ids)]
    done = [r for r in results if r["outcome"] in ("cancelled", "cancel_requested")]
    missed = [r for r in results if r not in done]
    error = None
    notes: list[str] = []
    if len(results) == 1 and missed:
        error = missed[0]["message"]
    elif missed:
        notes = [f"not cancelled: {r['message']}" for r in missed]
        error = f"{len(missed)} of {len(results)} jobs not cancelled"
    return Result(
        document={"jobs": [{k: v for k, v in r.items() if k != "message"} for r in results]},
        text="\n".join(r["message"] for r in done),
        code=ExitCode.FAILED if missed else ExitCode.OK,
        error=error,
        notes=notes,
    )
