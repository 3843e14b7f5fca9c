"""Outbound HTTP metrics of REST services, on the application's Prometheus registry."""

from __future__ import annotations

from typing import ClassVar
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Gauge
from usvc_core.resilience import CircuitState

__all__ = ["CIRCUIT_STATE_VALUES", "OutboundMetrics"]

#: ``outbound_circuit_state`` values: higher is worse.
CIRCUIT_STATE_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class OutboundMetrics:
    """``outbound_requests_total{service, status_class}`` counts every attempt that went out
    (status class ``2xx``..``5xx``, or ``timeout`` / ``error`` when no response came);
    ``outbound_circuit_state{service}`` is 0 closed, 1 half-open, 2 open.

    One instance per registry, shared by all REST services of the application (a registry
    refuses the same metric name twice): get it with :meth:`on`.
    """

    _by_registry: ClassVar[WeakKeyDictionary[CollectorRegistry, OutboundMetrics]] = (
        WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "outbound_requests",
            "Outbound HTTP attempts of REST services by status class",
            ["service", "status_class"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "outbound_circuit_state",
            "Circuit breaker state of each REST service (0=closed, 1=half-open, 2=open)",
            ["service"],
            registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry) -> OutboundMetrics:
        """The outbound metrics registered on ``registry`` (created on first use)."""
        found = cls._by_registry.get(registry)
        if found is None:
            found = cls._by_registry[registry] = cls(registry)
        return found

    def attempt(self, service: str, status_class: str) -> None:
        self.requests.labels(service=service, status_class=status_class).inc()

    def circuit(self, service: str, state: CircuitState) -> None:
        self.circuit_state.labels(service=service).set(CIRCUIT_STATE_VALUES[state])
