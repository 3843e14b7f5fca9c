"""Fails while the file named by FLAKY_MARKER exists: a job an operator retries once the
cause is gone."""

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel
from usvc_core import action


class FlakyInput(BaseModel):
    order: int


@action("flaky")
async def handle(input: FlakyInput) -> dict[str, int]:
    if await asyncio.to_thread(Path(os.environ["FLAKY_MARKER"]).exists):
        raise RuntimeError(f"order {input.order}: the payment provider is down")
    return {"order": input.order, "charged": 1}
