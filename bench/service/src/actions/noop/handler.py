"""The benchmarks' no-op action: a small pydantic input, nothing done, nothing returned."""

from pydantic import BaseModel
from usvc_core import action


class NoopInput(BaseModel):
    n: int
    name: str


@action("noop")
async def handle(input: NoopInput) -> None:
    return None
