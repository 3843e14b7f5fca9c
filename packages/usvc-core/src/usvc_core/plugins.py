"""The plugin loader: finds adapters by entry point, so ``Application()`` (and the ``usvc``
command) can wire themselves from settings alone.

Groups (any installed distribution may add to them):

- ``usvc.queues``: name = the QUEUE_URL scheme (``memory``, ``sqlite``, ``oracle``);
  value: ``factory(url: str, settings: WorkerSettings) -> JobQueue``.
- ``usvc.surfaces``: value: ``factory(app: Application) -> Surface | None`` (None = disabled
  by the settings).
- ``usvc.metrics``: value: ``factory() -> Metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from usvc_core.errors import ConfigurationError, MissingPackageError

if TYPE_CHECKING:
    from usvc_core.ports import JobQueue
    from usvc_core.settings import WorkerSettings

__all__ = [
    "METRICS_GROUP",
    "QUEUE_GROUP",
    "QUEUE_PACKAGES",
    "SURFACE_GROUP",
    "load_entry_point",
    "named_entry_points",
    "queue_from_settings",
]

QUEUE_GROUP = "usvc.queues"
SURFACE_GROUP = "usvc.surfaces"
METRICS_GROUP = "usvc.metrics"

#: The distribution to install for each queue scheme, for error messages.
QUEUE_PACKAGES = {"memory": "usvc-testing", "sqlite": "usvc-testing", "oracle": "usvc-oracle"}


def named_entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def load_entry_point(group: str, name: str, package_hint: str) -> Callable[..., Any]:
    """Load one adapter factory, or fail naming the package to add."""
    ep = named_entry_points(group).get(name)
    if ep is None:
        raise MissingPackageError(
            f"{name!r} needs the package {package_hint}, which is not installed: "
            f"uv add {package_hint}"
        )
    loaded: Callable[..., Any] = ep.load()
    return loaded


def queue_from_settings(settings: WorkerSettings) -> JobQueue:
    """The queue the settings name (QUEUE_URL, DEV_MODE, ORACLE_USER), not yet opened."""
    from usvc_core.settings import queue_scheme

    try:
        scheme = queue_scheme(settings)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    url = settings.QUEUE_URL or f"{scheme}://"
    factory = load_entry_point(QUEUE_GROUP, scheme, QUEUE_PACKAGES.get(scheme, scheme))
    queue: JobQueue = factory(url, settings)
    return queue
