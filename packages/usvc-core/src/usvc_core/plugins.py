"""The plugin loader: finds adapters by entry point, so ``Application()`` (and the ``usvc``
command) can wire themselves from settings alone.

Groups (any installed distribution may add to them):

- ``usvc.queues``: name = the QUEUE_URL scheme (``memory``, ``sqlite``, ``oracle``);
  value: ``factory(url: str, settings: WorkerSettings) -> JobQueue``. The factory reads its
  own variables with ``settings.source.load(ItsSettings)``; its ``open()`` raises
  QueueUnavailableError for what may pass (the store is unreachable: the application keeps
  retrying) and a ConfigurationError for what will not (bad credentials, a missing table).
- ``usvc.surfaces``: value: ``factory(context: SurfaceContext) -> Surface | None`` (None =
  disabled by its settings); see :mod:`usvc_core.surface_context`.
- ``usvc.metrics``: value: ``factory() -> Metrics``.
- ``usvc.settings``: value: a pydantic-settings model of the package's own variables;
  :func:`usvc_core.settings.load_settings` checks it with the core's, so that every mistake
  is reported at startup in one message.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from usvc_core.errors import ConfigurationError, MissingPackageError

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from usvc_core.ports import JobQueue
    from usvc_core.settings import SettingsSource, WorkerSettings

__all__ = [
    "HTTP_PACKAGE",
    "HTTP_SURFACE",
    "METRICS_GROUP",
    "QUEUE_GROUP",
    "QUEUE_PACKAGES",
    "SETTINGS_GROUP",
    "SURFACE_GROUP",
    "load_entry_point",
    "missing_setting_packages",
    "named_entry_points",
    "queue_from_settings",
    "settings_models",
]

QUEUE_GROUP = "usvc.queues"
SURFACE_GROUP = "usvc.surfaces"
METRICS_GROUP = "usvc.metrics"
SETTINGS_GROUP = "usvc.settings"

#: The distribution to install for each queue scheme, for error messages.
QUEUE_PACKAGES = {
    "memory": "usvc-testing",
    "sqlite": "usvc-sqlite",
    "postgresql": "usvc-postgres",
    "oracle": "usvc-oracle",
}
#: The HTTP surface's entry point name and distribution.
HTTP_SURFACE = "http"
HTTP_PACKAGE = "usvc-http"

#: Settings that only mean something with a surface installed: variable -> (entry point
#: name in ``usvc.surfaces``, distribution to add).
_SURFACE_SETTINGS = {"MONGODB_URI": ("mongo_registry", "usvc-mongo")}
#: Why the settings chose a queue when QUEUE_URL is empty, for error messages.
_DEFAULT_QUEUE_REASON = {
    "memory": "DEV_MODE=True selects the in-memory queue",
    "oracle": "DEV_MODE=False (and no QUEUE_URL) selects the Oracle queue",
}
_DEFAULT_QUEUE_ALTERNATIVE = {
    "memory": "or set QUEUE_URL to a queue whose package is installed",
    "oracle": "or set DEV_MODE=True for the in-memory queue, or QUEUE_URL=sqlite:///jobs.db",
}


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


def settings_models() -> list[type[BaseSettings]]:
    """The settings models of the installed adapters, by entry point name."""
    eps = named_entry_points(SETTINGS_GROUP)
    return [eps[name].load() for name in sorted(eps)]


def missing_setting_packages(source: SettingsSource, surfaces: dict[str, EntryPoint]) -> list[str]:
    """One message per setting that is set but needs a surface package not installed."""
    return [
        f"{name} is set, but it needs the package {package}, which is not installed: "
        f"uv add {package} (or leave {name} empty)"
        for name, (entry_point, package) in _SURFACE_SETTINGS.items()
        if source.get(name) and entry_point not in surfaces
    ]


def queue_from_settings(settings: WorkerSettings) -> JobQueue:
    """The queue the settings name (QUEUE_URL, else DEV_MODE), not yet opened."""
    from usvc_core.settings import queue_scheme

    try:
        scheme = queue_scheme(settings)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    url = settings.QUEUE_URL or f"{scheme}://"
    package = QUEUE_PACKAGES.get(scheme, scheme)
    if not settings.QUEUE_URL and scheme not in named_entry_points(QUEUE_GROUP):
        raise MissingPackageError(
            f"{_DEFAULT_QUEUE_REASON[scheme]}, which needs the package {package}, which is "
            f"not installed: uv add {package} ({_DEFAULT_QUEUE_ALTERNATIVE[scheme]})"
        )
    factory = load_entry_point(QUEUE_GROUP, scheme, package)
    queue: JobQueue = factory(url, settings)
    return queue
