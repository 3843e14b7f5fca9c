"""The benchmarks' job (not a test): a `noop` action that validates its input and does
nothing, shared by the drain scripts whose worker processes serve it."""

from __future__ import annotations

from pydantic import BaseModel
from usvc_core import action

__all__ = ["NoopInput", "noop"]


class NoopInput(BaseModel):
    n: int


@action("noop")
async def noop(input: NoopInput) -> None:
    """The benchmark's job: validates its input and does nothing."""
    return
