"""A job without input, for a schedule (the fleet browser test sets SCHEDULES)."""

from usvc_core import action


@action("tidy")
async def handle() -> dict[str, int]:
    return {"tidied": 1}
