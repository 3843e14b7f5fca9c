"""usvc testing: queues that need no Oracle, fakes, the queue contract suite, a pytest plugin."""

from usvc_testing.clock import FakeClock
from usvc_testing.queues import InMemoryQueue
from usvc_testing.run_action import ActionResult, run_action

__version__ = "0.1.0"

__all__ = ["ActionResult", "FakeClock", "InMemoryQueue", "run_action"]
