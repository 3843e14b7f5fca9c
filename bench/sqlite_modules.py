"""Where the SQLite queue lives in the checkout being measured: ``usvc_sqlite`` (its own
package) or ``usvc_testing.queues.sqlite`` (before the move). ``bench/run.py compare`` runs
this harness against older revisions too, so the cases import it from here."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["sqlite_connection", "sqlite_package", "sqlite_queue_class", "sqlite_statements"]

_PACKAGES = ("usvc_sqlite", "usvc_testing.queues.sqlite")


def _first(suffix: str) -> ModuleType:
    missing: list[str] = []
    for package in _PACKAGES:
        name = f"{package}{suffix}"
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise  # a module that exists but fails to import: a real error
            missing.append(name)
    raise ModuleNotFoundError(f"no SQLite queue in this checkout (tried {', '.join(missing)})")


def sqlite_package() -> ModuleType:
    return _first("")


def sqlite_statements() -> ModuleType:
    return _first(".statements")


def sqlite_connection() -> ModuleType:
    return _first(".connection")


def sqlite_queue_class() -> Any:
    return sqlite_package().SqliteQueue
