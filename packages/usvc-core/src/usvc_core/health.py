"""The three-tier health model: checks are GREEN, YELLOW or RED; the whole is their minimum."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

__all__ = ["HealthCheck", "HealthRegistry", "HealthSnapshot", "Status"]


class Status(IntEnum):
    """Health of one check or of the whole service; lower is worse."""

    RED = 0  #: broken: core functionality unavailable
    YELLOW = 1  #: degraded: transient errors, retrying
    GREEN = 2  #: healthy


@dataclass(slots=True)
class HealthCheck:
    status: Status = Status.GREEN
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """The aggregate at one moment, shaped like the JSON of ``GET /health``."""

    status: Status
    timestamp: datetime
    checks: Mapping[str, HealthCheck]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.name,
            "timestamp": self.timestamp.isoformat(),
            "checks": {
                name: {"status": check.status.name, "details": dict(check.details)}
                for name, check in self.checks.items()
            },
        }


class HealthRegistry:
    """Named health checks. The aggregate is the minimum; with no checks it is GREEN."""

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}
        self._listeners: list[Callable[[HealthRegistry], None]] = []

    def register(
        self,
        name: str,
        status: Status = Status.GREEN,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a check (or reset an existing one)."""
        self._checks[name] = HealthCheck(status, dict(details or {}))
        self._notify()

    def update(self, name: str, status: Status, details: Mapping[str, Any] | None = None) -> None:
        """Set a check's status; registers it if needed. Details replace the old ones."""
        check = self._checks.get(name)
        new_details = dict(details or {})
        if check is not None and check.status is status and check.details == new_details:
            return
        self._checks[name] = HealthCheck(status, new_details)
        self._notify()

    def unregister(self, name: str) -> None:
        if self._checks.pop(name, None) is not None:
            self._notify()

    def get(self, name: str) -> HealthCheck | None:
        return self._checks.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    def aggregate(self) -> Status:
        """The worst status of all checks (GREEN when there are none)."""
        return min((c.status for c in self._checks.values()), default=Status.GREEN)

    def snapshot(self) -> HealthSnapshot:
        checks = {n: HealthCheck(c.status, dict(c.details)) for n, c in self._checks.items()}
        return HealthSnapshot(self.aggregate(), datetime.now(UTC), checks)

    def subscribe(self, listener: Callable[[HealthRegistry], None]) -> None:
        """Call ``listener`` whenever a check changes (metrics use this)."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener(self)
