"""Services: long-lived dependencies injected into handlers and into each other by type hint."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

import structlog

from usvc_core.errors import ConfigurationError, ServiceNotFoundError, ServiceStartError
from usvc_core.health import HealthRegistry
from usvc_core.ports import Metrics

__all__ = ["ServiceContainer", "ServiceProvider"]

_log = structlog.get_logger("usvc.services")
S = TypeVar("S", bound="ServiceProvider")


class ServiceProvider:
    """Base class of every service. Override ``initialize`` and ``cleanup`` as needed.

    ``health_registry`` (and ``app_metrics``, the application's metrics adapter, when it has
    one) are bound by the container before ``initialize`` runs.
    """

    name: ClassVar[str] = ""
    health_registry: HealthRegistry
    app_metrics: Metrics | None = None

    def bind_health_registry(self, registry: HealthRegistry) -> None:
        self.health_registry = registry

    def bind_metrics(self, metrics: Metrics) -> None:
        """Lets a service add its own metrics next to the application's (e.g. outbound HTTP)."""
        self.app_metrics = metrics

    async def initialize(self) -> None:
        """Called once at startup, in registration order."""

    async def cleanup(self) -> None:
        """Called once at shutdown, in reverse order (also after a failed startup)."""

    @classmethod
    def service_name(cls) -> str:
        return cls.name or cls.__name__


def _service_params(cls: type[ServiceProvider]) -> dict[str, type[ServiceProvider]]:
    """The ``__init__`` parameters of ``cls`` that are services, by name."""
    init = cls.__init__
    if init is object.__init__:
        return {}
    try:
        hints = typing.get_type_hints(init)
    except Exception as exc:  # NameError, TypeError from unresolvable annotations
        raise ConfigurationError(
            f"cannot resolve the type hints of {cls.__qualname__}.__init__ "
            f"({inspect.getsourcefile(cls)}): {exc}"
        ) from exc
    wanted: dict[str, type[ServiceProvider]] = {}
    for pname, param in inspect.signature(init).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(pname)
        if isinstance(hint, type) and issubclass(hint, ServiceProvider):
            wanted[pname] = hint
        elif param.default is inspect.Parameter.empty:
            raise ConfigurationError(
                f"{cls.__qualname__}.__init__ parameter {pname!r} "
                f"({inspect.getsourcefile(cls)}) must be typed as a ServiceProvider subclass "
                "or have a default"
            )
    return wanted


class ServiceContainer:
    """Holds services in registration order; creates, initializes and cleans them up.

    A class registered later may take an earlier one in its ``__init__`` (by type hint).
    ``override`` replaces a service with a given instance, for tests.
    """

    def __init__(self, health: HealthRegistry) -> None:
        self._health = health
        self._registered: list[type[ServiceProvider] | ServiceProvider] = []
        self._overrides: dict[type[ServiceProvider], ServiceProvider] = {}
        self._instances: dict[type[ServiceProvider], ServiceProvider] = {}
        self._initialized: list[ServiceProvider] = []

    def register(self, service: type[ServiceProvider] | ServiceProvider) -> None:
        cls = service if isinstance(service, type) else type(service)
        if not issubclass(cls, ServiceProvider):
            raise ConfigurationError(f"{cls.__qualname__} is not a ServiceProvider subclass")
        if any(self._cls_of(r) is cls for r in self._registered):
            raise ConfigurationError(f"service {cls.__qualname__} is registered twice")
        self._registered.append(service)

    def override(self, cls: type[S], instance: S) -> None:
        """Use ``instance`` wherever ``cls`` is asked for (registered or not)."""
        self._overrides[cls] = instance

    @staticmethod
    def _cls_of(item: type[ServiceProvider] | ServiceProvider) -> type[ServiceProvider]:
        return item if isinstance(item, type) else type(item)

    @property
    def registered_types(self) -> list[type[ServiceProvider]]:
        return [self._cls_of(r) for r in self._registered]

    def can_provide(self, cls: type[ServiceProvider]) -> bool:
        return self._find_type(cls, self.registered_types + list(self._overrides)) is not None

    @staticmethod
    def _find_type(
        wanted: type[ServiceProvider], types: Iterable[type[ServiceProvider]]
    ) -> type[ServiceProvider] | None:
        types = list(types)
        if wanted in types:
            return wanted
        return next((t for t in types if issubclass(t, wanted)), None)

    def get(self, cls: type[S]) -> S:
        """The instance serving ``cls`` (an override, the class itself or a subclass)."""
        found = self._find_type(cls, list(self._overrides)) or self._find_type(
            cls, list(self._instances)
        )
        if found is None:
            raise ServiceNotFoundError(
                f"no service provides {cls.__qualname__}: call app.register_service"
                f"({cls.__qualname__}) before app.run()"
            )
        instance = self._overrides.get(found) or self._instances[found]
        return typing.cast("S", instance)

    def check_resolvable(self, cls: type[ServiceProvider], needed_by: str) -> None:
        if not self.can_provide(cls):
            raise ServiceNotFoundError(
                f"{needed_by} needs {cls.__qualname__}, but no such service is registered: "
                f"call app.register_service({cls.__qualname__}) before app.run()"
            )

    def build(self) -> None:
        """Create every registered service in order, injecting earlier ones by type hint."""
        for item in self._registered:
            cls = self._cls_of(item)
            if cls in self._overrides or cls in self._instances:
                continue
            if isinstance(item, ServiceProvider):
                self._instances[cls] = item
                continue
            kwargs: dict[str, Any] = {}
            for pname, dep in _service_params(cls).items():
                try:
                    kwargs[pname] = self.get(dep)
                except ServiceNotFoundError:
                    raise ServiceNotFoundError(
                        f"{cls.__qualname__} needs {dep.__qualname__} (parameter {pname!r}): "
                        f"register {dep.__qualname__} before {cls.__qualname__}"
                    ) from None
            self._instances[cls] = cls(**kwargs)

    async def initialize(self, metrics: Metrics | None = None) -> None:
        """``initialize()`` each registered service in order; on failure clean up those
        already done. Overrides are test doubles: they get the health registry (and
        ``metrics``) but are used as they are, never initialized or cleaned up."""
        self.build()
        for double in self._overrides.values():
            double.bind_health_registry(self._health)
            if metrics is not None:
                double.bind_metrics(metrics)
        for cls in self.registered_types:
            inst = self._instances.get(cls)
            if inst is None or cls in self._overrides:
                continue
            inst.bind_health_registry(self._health)
            if metrics is not None:
                inst.bind_metrics(metrics)
            try:
                await inst.initialize()
            except Exception as exc:
                name = type(inst).service_name()
                await self.cleanup()
                raise ServiceStartError(f"service {name} failed to initialize: {exc!r}") from exc
            self._initialized.append(inst)

    async def cleanup(self) -> None:
        """``cleanup()`` every initialized service in reverse order; errors are logged."""
        while self._initialized:
            inst = self._initialized.pop()
            try:
                await inst.cleanup()
            except Exception:
                _log.exception("service cleanup failed", service=type(inst).service_name())
