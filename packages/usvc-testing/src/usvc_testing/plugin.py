"""pytest plugin (entry point ``pytest11: usvc``): prefixed fixtures for usvc users.

Imports of the kit happen inside the fixtures, so loading the plugin does not import
``usvc_core`` before coverage measurement starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from usvc_testing.clock import FakeClock
    from usvc_testing.otlp import OtlpReceiver
    from usvc_testing.queues.memory import InMemoryQueue

pytest.register_assert_rewrite("usvc_testing.contract")


@pytest.fixture
def usvc_fake_clock() -> FakeClock:
    """A clock that moves only when the test calls ``advance``."""
    from usvc_testing.clock import FakeClock

    return FakeClock()


@pytest.fixture
def usvc_memory_queue(usvc_fake_clock: FakeClock) -> InMemoryQueue:
    """An empty in-memory queue on the fake clock."""
    from usvc_testing.queues.memory import InMemoryQueue

    return InMemoryQueue(usvc_fake_clock)


@pytest.fixture
def usvc_otlp_receiver() -> Iterator[OtlpReceiver]:
    """A started in-process OTLP/gRPC receiver (needs ``usvc-testing[otlp]``)."""
    from usvc_testing.otlp import OtlpReceiver  # lazy: grpcio is an optional extra

    with OtlpReceiver() as receiver:
        yield receiver
