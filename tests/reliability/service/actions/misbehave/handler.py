"""Handlers that misbehave on purpose, one way each; every job of theirs must end Failed
with the right error code while the worker goes on."""

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from usvc_core import action


class UnprintableError(Exception):
    """An exception whose message cannot even be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


@action("raise")
async def raises() -> None:
    raise ValueError("the handler found the input unusable")


@action("timeout", timeout_seconds=0.3)
async def times_out() -> None:
    await asyncio.sleep(30)


@action("block", timeout_seconds=0.2)
async def blocks_the_loop() -> None:
    time.sleep(0.6)  # noqa: ASYNC251 - blocking the event loop is the point


@action("unserializable")
async def returns_a_datetime() -> dict[str, Any]:
    return {"when": datetime.now(UTC)}


@action("nan")
async def returns_nan() -> dict[str, Any]:
    return {"value": float("nan")}


@action("exit")
async def raises_system_exit() -> None:
    raise SystemExit(3)


@action("interrupt")
async def raises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@action("unprintable")
async def raises_unprintable() -> None:
    raise UnprintableError


@action("self_cancel")
async def raises_cancelled() -> None:
    # What a handler sees when a task it awaits was cancelled by someone else.
    inner = asyncio.create_task(asyncio.sleep(30))
    inner.cancel()
    await inner
