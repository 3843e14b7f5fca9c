"""Resolved actions: what each handler takes and returns, checked once at startup."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from usvc_core.actions.context import JobContext
from usvc_core.actions.decorator import ACTION_ATTR, ActionOptions, source_of
from usvc_core.errors import ActionDefinitionError
from usvc_core.services import ServiceContainer, ServiceProvider

if TYPE_CHECKING:
    from usvc_core.service_registry import ActionSchema

__all__ = ["ActionDefinition", "ActionRegistry"]


@dataclass(slots=True)
class ActionDefinition:
    """One handler with its parameters sorted by role."""

    name: str
    handler: Callable[..., Awaitable[Any]]
    source: str
    options: ActionOptions
    input_param: str | None = None
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    context_param: str | None = None
    service_params: dict[str, type[ServiceProvider]] = field(default_factory=dict)
    #: service instances by parameter name, filled by ``ActionRegistry.bind``
    bound_services: dict[str, ServiceProvider] = field(default_factory=dict)

    @classmethod
    def from_handler(cls, fn: Callable[..., Awaitable[Any]]) -> ActionDefinition:
        options: ActionOptions | None = getattr(fn, ACTION_ATTR, None)
        if options is None:
            raise ActionDefinitionError(f"{fn.__qualname__} ({source_of(fn)}) is not an @action")
        source = source_of(fn)
        where = f"@action({options.name!r}) handler {fn.__qualname__} ({source})"
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # NameError/TypeError from annotations that do not resolve
            raise ActionDefinitionError(f"{where}: cannot resolve its type hints: {exc}") from exc
        definition = cls(options.name, fn, source, options)
        for pname, param in inspect.signature(fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ActionDefinitionError(f"{where}: *args/**kwargs parameters are not supported")
            hint = hints.get(pname)
            if hint is None:
                raise ActionDefinitionError(
                    f"{where}: parameter {pname!r} has no type hint; type it as a BaseModel "
                    "input, a ServiceProvider subclass or JobContext"
                )
            if isinstance(hint, type) and issubclass(hint, BaseModel):
                if definition.input_param is not None:
                    raise ActionDefinitionError(
                        f"{where}: parameters {definition.input_param!r} and {pname!r} are both "
                        "BaseModel inputs; a handler takes one input model"
                    )
                definition.input_param, definition.input_model = pname, hint
            elif isinstance(hint, type) and issubclass(hint, ServiceProvider):
                definition.service_params[pname] = hint
            elif hint is JobContext:
                definition.context_param = pname
            elif param.default is not inspect.Parameter.empty:
                continue  # left to its default
            else:
                raise ActionDefinitionError(
                    f"{where}: parameter {pname!r} has type {hint!r}, which is not a BaseModel "
                    "input, a ServiceProvider subclass or JobContext"
                )
        ret = hints.get("return")
        if isinstance(ret, type) and issubclass(ret, BaseModel):
            definition.output_model = ret
        return definition

    def schema(self) -> ActionSchema:
        """Input and output JSON Schemas (for the service registry)."""
        # Imported here: only a service with a registry configured needs the record.
        from usvc_core.service_registry import ActionSchema

        input_schema: dict[str, Any] = (
            self.input_model.model_json_schema() if self.input_model else {"type": "object"}
        )
        output = self.output_model.model_json_schema() if self.output_model else None
        return ActionSchema(self.name, input_schema, output)


class ActionRegistry:
    """Actions by name; one handler per name."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionDefinition] = {}
        #: The action of that name, or None: the dict's own ``get`` (looked up per job).
        self.get: Callable[[str], ActionDefinition | None] = self._actions.get

    def add(self, fn: Callable[..., Awaitable[Any]]) -> ActionDefinition:
        definition = ActionDefinition.from_handler(fn)
        existing = self._actions.get(definition.name)
        if existing is not None and existing.handler is not fn:
            raise ActionDefinitionError(
                f"action {definition.name!r} is defined twice: {existing.source} and "
                f"{definition.source}"
            )
        self._actions[definition.name] = definition
        return definition

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[ActionDefinition]:
        return iter(self._actions.values())

    def __len__(self) -> int:
        return len(self._actions)

    @property
    def names(self) -> list[str]:
        return sorted(self._actions)

    def max_attempts_for(self, action: str, default: int) -> int:
        """A new job's attempts when its producer gives none: the action's own
        ``@action(max_attempts=...)``, else ``default`` (``JOB_MAX_ATTEMPTS``). The one rule
        for every door: ``Application.enqueue`` (and so the HTTP API) and ``usvc enqueue``."""
        definition = self._actions.get(action)
        own = definition.options.max_attempts if definition is not None else None
        return own or default

    def max_running_limits(self) -> dict[str, int]:
        """``@action(max_running=...)`` by action name (the claim's ``max_running``)."""
        return {
            d.name: d.options.max_running
            for d in self._actions.values()
            if d.options.max_running is not None
        }

    def check_services(self, container: ServiceContainer) -> None:
        """Fail at startup when a handler asks for a service nobody registered."""
        for d in self._actions.values():
            for pname, cls in d.service_params.items():
                container.check_resolvable(
                    cls, f"@action({d.name!r}) handler ({d.source}) parameter {pname!r}"
                )

    def bind(self, container: ServiceContainer) -> None:
        """Look up each handler's service instances once, so jobs do not pay for it."""
        for d in self._actions.values():
            d.bound_services = {p: container.get(c) for p, c in d.service_params.items()}
