import asyncio

from pydantic import BaseModel
from usvc_core import action, logger


class SleepInput(BaseModel):
    ms: int = 0


@action("sleep")
async def handle(input: SleepInput) -> dict[str, int]:
    logger.info("sleeping", ms=input.ms)
    await asyncio.sleep(input.ms / 1000)
    return {"slept_ms": input.ms}
