"""Handlers that misbehave in ways that once escaped ``execute_job`` (found by the
reliability suite): each must still end as a Failed outcome, never as a crashed job task."""

from __future__ import annotations

import asyncio
from typing import Any

from usvc_core import JobStatus, action
from usvc_testing import run_action


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken too")


@action("unprintable")
async def unprintable() -> None:
    raise UnprintableError


@action("unrepresentable")
async def unrepresentable() -> Any:
    return Unrepresentable()


@action("self_cancel")
async def self_cancel() -> None:
    inner = asyncio.create_task(asyncio.sleep(30))
    inner.cancel()
    await inner


async def test_an_exception_whose_message_raises_fails_the_job() -> None:
    """An exception with a broken __str__ is reported by its type name."""
    r = await run_action(unprintable, {"action": "unprintable"})
    assert r.status is JobStatus.FAILED and r.error_code == "HANDLER_ERROR"
    assert r.error_message == "UnprintableError (its message could not be rendered: RuntimeError)"


async def test_a_result_whose_repr_raises_is_not_serializable() -> None:
    """A result object with a broken __repr__ still fails as RESULT_NOT_SERIALIZABLE."""
    r = await run_action(unrepresentable, {"action": "unrepresentable"})
    assert r.error_code == "RESULT_NOT_SERIALIZABLE"
    assert r.error_message is not None
    assert "<Unrepresentable whose repr() failed>" in r.error_message


async def test_a_cancelled_error_from_inside_the_handler_fails_the_job() -> None:
    """A CancelledError the handler lets through (nobody cancelled the job) is HANDLER_ERROR."""
    r = await run_action(self_cancel, {"action": "self_cancel"})
    assert r.status is JobStatus.FAILED and r.error_code == "HANDLER_ERROR"
    assert r.error_message is not None
    assert r.error_message.startswith("CancelledError raised by the handler")


async def test_cancelling_the_job_itself_still_propagates() -> None:
    """When the job's own task is cancelled (shutdown, lost lease), the cancellation wins."""
    started = asyncio.Event()

    @action("waits")
    async def waits() -> None:
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(run_action(waits, {"action": "waits"}))
    await started.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancellation was swallowed")
    assert task.cancelled()
