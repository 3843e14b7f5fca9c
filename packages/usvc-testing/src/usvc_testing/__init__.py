"""usvc testing: queues that need no Oracle, fakes, the queue contract suite, a pytest plugin.

Names are imported on first use (PEP 562), so that pytest loading this package's plugin
does not import ``usvc_core`` before coverage measurement starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usvc_testing.clock import FakeClock
    from usvc_testing.harness import ActionResult, run_action
    from usvc_testing.queues import Durability, InMemoryQueue, SqliteQueue

__version__ = "0.1.0"

__all__ = ["ActionResult", "Durability", "FakeClock", "InMemoryQueue", "SqliteQueue", "run_action"]

_WHERE = {
    "ActionResult": "usvc_testing.harness",
    "Durability": "usvc_testing.queues",
    "FakeClock": "usvc_testing.clock",
    "InMemoryQueue": "usvc_testing.queues",
    "SqliteQueue": "usvc_testing.queues",
    "run_action": "usvc_testing.harness",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'usvc_testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
