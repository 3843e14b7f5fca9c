"""The plugin loader: finds adapters by entry point, so ``Application()`` (and the ``usvc``
command) can wire themselves from settings alone.

Groups (any installed distribution may add to them):

- ``usvc.queues``: name = the QUEUE_URL scheme (``memory``, ``sqlite``, ``oracle``, or any
  other: the installed entry points alone decide which schemes exist);
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

This module imports nothing of the kit at run time but its errors (settings.py imports it,
not the other way round), and loads an entry point only when it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from usvc_core.errors import ConfigurationError, MissingPackageError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint, EntryPoints

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
    "queue_scheme",
    "settings_models",
]

QUEUE_GROUP = "usvc.queues"
SURFACE_GROUP = "usvc.surfaces"
METRICS_GROUP = "usvc.metrics"
SETTINGS_GROUP = "usvc.settings"

#: The kit's own queue packages by scheme: only a hint for error messages (which schemes
#: exist is the installed entry points' answer, so a third-party queue loads like these).
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


@cache
def _all_entry_points() -> EntryPoints:
    # One scan of every installed distribution per process (~20 ms each): start-up looks up
    # four groups, and ``entry_points(group=...)`` would rescan them all for each.
    from importlib.metadata import entry_points

    return entry_points()


def named_entry_points(group: str) -> dict[str, EntryPoint]:
    """The entry points of one group by name (from the process's single scan)."""
    return {ep.name: ep for ep in _all_entry_points().select(group=group)}


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


def queue_scheme(settings: WorkerSettings) -> str:
    """Which queue the settings choose: QUEUE_URL's scheme, else memory in dev mode, else
    Oracle (the spec's behaviour). Whether a package provides it is not checked here."""
    if settings.QUEUE_URL:
        return urlsplit(settings.QUEUE_URL).scheme.lower()
    return "memory" if settings.DEV_MODE else "oracle"


def _unknown_scheme(settings: WorkerSettings, scheme: str, installed: list[str]) -> str:
    have = ", ".join(f"{name}://" for name in installed) or "none"
    package = QUEUE_PACKAGES.get(scheme)
    add = (
        f"add its package: uv add {package}"
        if package
        else f"install the package that provides it (an entry point {scheme!r} in the "
        f"group {QUEUE_GROUP})"
    )
    if not settings.QUEUE_URL:
        return (
            f"{_DEFAULT_QUEUE_REASON[scheme]}, which needs the package {package}, which is "
            f"not installed: uv add {package} ({_DEFAULT_QUEUE_ALTERNATIVE[scheme]}; "
            f"installed queues: {have})"
        )
    return (
        f"QUEUE_URL={settings.QUEUE_URL!r}: no installed package provides the queue scheme "
        f"{scheme!r} (installed queues: {have}); {add}"
    )


def queue_from_settings(settings: WorkerSettings) -> JobQueue:
    """The queue the settings name (QUEUE_URL, else DEV_MODE), not yet opened. Only the
    chosen scheme's entry point is loaded."""
    scheme = queue_scheme(settings)
    installed = named_entry_points(QUEUE_GROUP)
    if scheme not in installed:
        message = _unknown_scheme(settings, scheme, sorted(installed))
        if QUEUE_PACKAGES.get(scheme):
            raise MissingPackageError(message)
        raise ConfigurationError(message)
    factory: Callable[..., Any] = installed[scheme].load()
    queue: JobQueue = factory(settings.QUEUE_URL or f"{scheme}://", settings)
    return queue
