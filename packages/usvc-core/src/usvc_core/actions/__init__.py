"""Actions: the ``@action`` decorator, the registry of handlers and their discovery."""

from usvc_core.actions.context import JobContext, RetryJob
from usvc_core.actions.decorator import ActionOptions, action
from usvc_core.actions.discovery import discover_actions, resolve_actions_dir
from usvc_core.actions.registry import ActionDefinition, ActionRegistry

__all__ = [
    "ActionDefinition",
    "ActionOptions",
    "ActionRegistry",
    "JobContext",
    "RetryJob",
    "action",
    "discover_actions",
    "resolve_actions_dir",
]
