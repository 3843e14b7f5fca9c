"""Every line logged while a job runs carries that job's token (and no other), whoever logs it:
the handler, code it calls, a service, an ``asyncio.to_thread`` thread, a stdlib library."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pydantic import BaseModel
from usvc_core import Application, ServiceProvider, action, logger
from usvc_core.logging import configure_logging
from usvc_core.settings import WorkerSettings
from usvc_testing import InMemoryQueue

# Five: the default thread pool has at least five threads (min(32, cpus + 4)).
MARKERS = [f"m{i}" for i in range(5)]


class Audit(ServiceProvider):
    """A service the handler calls; it logs on its own logger."""

    async def record(self, marker: str) -> None:
        await asyncio.sleep(0)
        structlog.get_logger("audit").info("service line", marker=marker)


def helper(marker: str) -> None:
    """Plain code the handler calls."""
    logger.info("helper line", marker=marker)


def blocking(marker: str, barrier: threading.Barrier | None) -> str:
    """Runs in a worker thread (asyncio.to_thread)."""
    if barrier is not None:
        barrier.wait(timeout=10)  # all jobs are inside their threads at the same moment
    structlog.get_logger("threaded").info("thread line", marker=marker)
    logging.getLogger("somelib.client").info("library line %s", marker)
    return marker


class WorkIn(BaseModel):
    marker: str


BARRIER: dict[str, threading.Barrier | None] = {"b": None}


@action("work")
async def work(input: WorkIn, audit: Audit) -> dict[str, str]:
    m = input.marker
    logger.info("handler start", marker=m)
    await asyncio.sleep(0.01)  # let the other jobs interleave
    helper(m)
    await audit.record(m)
    await asyncio.to_thread(blocking, m, BARRIER["b"])
    structlog.contextvars.bind_contextvars(step="late")  # must not leak into another job
    await asyncio.sleep(0.01)
    logger.info("handler end", marker=m)
    return {"marker": m}


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """JSON log lines of the test; logging is reset afterwards."""
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    yield stream
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


async def run(out: io.StringIO, concurrent: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    settings = WorkerSettings(
        MICROSERVICE_NAME="logging-test",
        DEV_MODE=True,
        HTTP_ENABLED=False,
        MAX_CONCURRENT_JOBS=concurrent,
        POLLING_INTERVAL_SECONDS=0.05,
    )
    app = Application(
        settings=settings, queue=InMemoryQueue(), surfaces=[], configure_logging=False
    )
    app.register_service(Audit)
    app.add_action(work)
    token_of: dict[str, str] = {}
    async with app:
        jobs = [
            await app.enqueue({"action": "work", "marker": m}, token=f"tok-{m}") for m in MARKERS
        ]
        for m, job in zip(MARKERS, jobs, strict=True):
            token_of[m] = job.token
            done = await app.wait_for_job(job.id, 20)
            assert done is not None
            assert done.status.value == "Completed"
    return [json.loads(line) for line in out.getvalue().splitlines()], token_of


def check(lines: list[dict[str, Any]], token_of: dict[str, str]) -> None:
    job_of_token = {t: m for m, t in token_of.items()}
    per_job: dict[str, list[str]] = {m: [] for m in MARKERS}
    for line in lines:
        marker = line.get("marker")
        if marker is None and line.get("logger") == "somelib.client":
            marker = line["event"].removeprefix("library line ")
        if marker is None and line.get("job_id"):
            marker = job_of_token[line["token"]] if "token" in line else "?"
        if marker is None:
            # Not a job's line (application/worker lifecycle): no job context at all.
            assert "token" not in line, line
            assert "step" not in line, line
            continue
        assert line.get("token") == token_of[marker], line  # that job's token, no other
        assert line.get("action") == "work", line
        if line["event"] == "handler end":
            assert line["step"] == "late"
        elif line["event"] != "job completed":
            assert "step" not in line, line
        per_job[marker].append(line["event"])
    for marker, events in per_job.items():
        assert sorted(events) == sorted(
            [
                "handler start",
                "helper line",
                "service line",
                "thread line",
                f"library line {marker}",
                "handler end",
                "job completed",
            ]
        ), marker


async def test_concurrent_jobs_each_line_carries_its_own_token(out: io.StringIO) -> None:
    """Five jobs run at once (all inside to_thread together); no line has a wrong token."""
    BARRIER["b"] = threading.Barrier(len(MARKERS))
    try:
        lines, token_of = await run(out, concurrent=len(MARKERS))
    finally:
        BARRIER["b"] = None
    check(lines, token_of)
    # The jobs really overlapped: some job started before another one ended.
    events = [(x["event"], x.get("marker")) for x in lines]
    first_end = events.index(next(e for e in events if e[0] == "handler end"))
    assert sum(1 for e in events[:first_end] if e[0] == "handler start") == len(MARKERS)


async def test_sequential_jobs_leak_nothing_into_the_next(out: io.StringIO) -> None:
    """One slot: each job's context (token, extra binds) ends with it."""
    lines, token_of = await run(out, concurrent=1)
    check(lines, token_of)
