"""The queue contract on the in-memory queue, with time driven by a FakeClock."""

from __future__ import annotations

import pytest
from usvc_core.ports import JobQueue
from usvc_testing import FakeClock, InMemoryQueue
from usvc_testing.contract import FleetContract


class TestInMemoryQueue(FleetContract):
    """InMemoryQueue keeps every promise of the queue and fleet ports."""

    clock: FakeClock

    @pytest.fixture
    def queue(self) -> InMemoryQueue:
        """An empty in-memory queue on a fake clock this test moves."""
        self.clock = FakeClock()
        return InMemoryQueue(self.clock)

    async def travel(self, seconds: float) -> None:
        """Move the fake clock instead of sleeping."""
        self.clock.advance(seconds)

    async def insert_raw_job(self, queue: JobQueue, service: str, raw: str | bytes) -> str:
        """Store the raw payload as another producer might have."""
        assert isinstance(queue, InMemoryQueue)
        return (await queue.enqueue_raw(service, raw)).id
