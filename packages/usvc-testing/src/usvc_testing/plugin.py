"""pytest plugin (entry point ``pytest11: usvc``): prefixed fixtures for usvc users."""

from __future__ import annotations

import pytest

from usvc_testing.clock import FakeClock
from usvc_testing.queues.memory import InMemoryQueue

pytest.register_assert_rewrite("usvc_testing.contract")


@pytest.fixture
def usvc_fake_clock() -> FakeClock:
    """A clock that moves only when the test calls ``advance``."""
    return FakeClock()


@pytest.fixture
def usvc_memory_queue(usvc_fake_clock: FakeClock) -> InMemoryQueue:
    """An empty in-memory queue on the fake clock."""
    return InMemoryQueue(usvc_fake_clock)
