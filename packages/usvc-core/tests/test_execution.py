"""Running one job: every way a bad job fails, and what a good one records."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel
from usvc_core import JobContext, JobStatus, RetryJob, action
from usvc_core.execution import json_ready
from usvc_testing import run_action


class In(BaseModel):
    name: str
    count: int = 1


class Out(BaseModel):
    message: str
    at: datetime


@action("greet")
async def greet(input: In) -> Out:
    return Out(message=f"Hello, {input.name}!", at=datetime(2026, 1, 1))


@action("raw")
async def raw(input: In) -> Any:
    if input.name == "set":
        return {"x": {1, 2}}
    if input.name == "nan":
        return {"x": float("nan")}
    if input.name == "str":
        return "plain"
    if input.name == "none":
        return None
    return {"items": [1, 2.5, True, None, "s"], "nested": {"k": [{}]}}


@action("boom")
async def boom(input: In) -> None:
    raise ValueError(f"bad {input.name}")


@action("exit")
async def exits(input: In) -> None:
    if input.name == "kbd":
        raise KeyboardInterrupt
    raise SystemExit(3)


@action("slow", timeout_seconds=0.05)
async def slow(input: In) -> None:
    await asyncio.sleep(10)


@action("blocker", timeout_seconds=0.01)
async def blocker(input: In) -> dict[str, int]:
    time.sleep(0.05)  # noqa: ASYNC251 - blocking on purpose
    return {}


@action("ctx")
async def ctx(job: JobContext) -> dict[str, Any]:
    return {"id": job.job_id, "token": job.token, "attempt": job.attempt, "max": job.max_attempts}


@action("again", retry_on=(ConnectionError,))
async def again(input: In) -> None:
    if input.name == "signal":
        raise RetryJob("later", delay_seconds=7)
    raise ConnectionError("flaky")


HANDLERS = [greet, raw, boom, exits, slow, blocker, ctx, again]


async def test_completed_result_is_model_dump_json() -> None:
    """A BaseModel result is stored as model_dump(mode='json')."""
    r = await run_action(HANDLERS, {"action": "greet", "name": "World"})
    assert r.status is JobStatus.COMPLETED and r.ok
    assert r.results == {"message": "Hello, World!", "at": "2026-01-01T00:00:00"}


async def test_json_ready_dicts_pass_through() -> None:
    """A dict of JSON values is kept as it is; None is allowed."""
    r = await run_action(HANDLERS, {"action": "raw", "name": "ok"})
    assert r.results == {"items": [1, 2.5, True, None, "s"], "nested": {"k": [{}]}}
    assert (await run_action(HANDLERS, {"action": "raw", "name": "none"})).ok


@pytest.mark.parametrize("name", ["set", "nan", "str"])
async def test_unserializable_results(name: str) -> None:
    """Sets, NaN and bare strings are RESULT_NOT_SERIALIZABLE with advice."""
    r = await run_action(HANDLERS, {"action": "raw", "name": name})
    assert r.error_code == "RESULT_NOT_SERIALIZABLE"
    assert r.error_message is not None and "return a pydantic BaseModel" in r.error_message


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        ([1, 2], "INVALID_PAYLOAD", "must be a JSON object"),
        ({"name": "x"}, "INVALID_PAYLOAD", 'no "action" field'),
        ({"action": 5}, "INVALID_PAYLOAD", "action=5"),
        ({"action": "nope"}, "UNKNOWN_ACTION", "no action handler matched: nope"),
        ({"action": "greet"}, "VALIDATION_ERROR", "name: Field required"),
        ({"action": "greet", "name": "x", "count": "many"}, "VALIDATION_ERROR", "count:"),
    ],
)
async def test_bad_payloads(payload: Any, code: str, fragment: str) -> None:
    """Each bad payload fails with its code and a message saying what is wrong."""
    r = await run_action(HANDLERS, payload)
    assert r.status is JobStatus.FAILED
    assert r.error_code == code
    assert r.error_message is not None and fragment in r.error_message
    assert not r.would_retry


async def test_handler_error_is_reported_not_raised() -> None:
    """A raising handler fails the job with its exception; not retried by default."""
    r = await run_action(HANDLERS, {"action": "boom", "name": "x"})
    assert (r.error_code, r.error_message, r.would_retry) == (
        "HANDLER_ERROR",
        "ValueError: bad x",
        False,
    )


@pytest.mark.parametrize("name", ["exit", "kbd"])
async def test_system_exit_and_keyboard_interrupt_are_contained(name: str) -> None:
    """SystemExit and KeyboardInterrupt from a handler fail the job, not the worker."""
    r = await run_action(HANDLERS, {"action": "exit", "name": name})
    assert r.error_code == "HANDLER_ERROR"
    assert r.error_message is not None
    assert r.error_message.startswith(("SystemExit", "KeyboardInterrupt"))


async def test_timeout() -> None:
    """A handler past its timeout fails with TIMEOUT."""
    r = await run_action(HANDLERS, {"action": "slow", "name": "x"})
    assert r.error_code == "TIMEOUT" and "0.05 s" in (r.error_message or "")


async def test_blocking_handler_is_reported_as_timeout() -> None:
    """A handler that blocks the loop past its timeout fails with advice to use to_thread."""
    r = await run_action(HANDLERS, {"action": "blocker", "name": "x"})
    assert r.error_code == "TIMEOUT" and "asyncio.to_thread" in (r.error_message or "")


async def test_job_context() -> None:
    """The context carries id, token and attempt numbers."""
    r = await run_action(HANDLERS, {"action": "ctx"}, attempt=2, max_attempts=4, token="t-1")
    assert r.results == {"id": "run-action-1", "token": "t-1", "attempt": 2, "max": 4}


async def test_retry_on_and_retry_signal() -> None:
    """retry_on exceptions and RetryJob ask for another attempt while attempts are left."""
    r = await run_action(HANDLERS, {"action": "again", "name": "x"}, attempt=1, max_attempts=3)
    assert r.would_retry and r.error_code == "HANDLER_ERROR"
    last = await run_action(HANDLERS, {"action": "again", "name": "x"}, attempt=3, max_attempts=3)
    assert not last.would_retry
    sig = await run_action(HANDLERS, {"action": "again", "name": "signal"})
    assert sig.would_retry and "retry requested: later" in (sig.error_message or "")


def test_json_ready() -> None:
    """Only plain JSON values count as JSON-ready."""
    assert json_ready({"a": [1, "b", None, True, 1.5]})
    assert not json_ready({1: "int key"})
    assert not json_ready({"t": (1, 2)})
    assert not json_ready(float("inf"))
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    assert not json_ready(deep)
