"""Running one job's handler: payload checks, input validation, injection, timeout and
result serialization. Pure of any queue, so the worker and ``run_action`` share it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator

from usvc_core.actions.context import JobContext, RetryJob
from usvc_core.actions.registry import ActionDefinition, ActionRegistry
from usvc_core.errors import CircuitOpenError
from usvc_core.jobs import RESERVED_PAYLOAD_KEYS, ErrorCode, Job

__all__ = [
    "Outcome",
    "cancelled_outcome",
    "execute_job",
    "handler_failed",
    "handler_kwargs",
    "handler_returned",
    "json_ready",
    "route",
    "timeout_outcome",
]

_MAX_MESSAGE = 4000


@dataclass(slots=True)
class Outcome:
    """What running a job produced. ``retry`` means: run it again after ``retry_delay``
    (if attempts are left); otherwise ``error_code`` set means Failed."""

    results: Any = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    retry: bool = False
    retry_delay: float | None = None
    runtime_ms: float = 0.0
    #: A retry waits at least this long (an open circuit's next trial), whatever the delay.
    retry_not_before: float | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


def _truncate(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[: _MAX_MESSAGE - 20] + f"... ({len(message)} chars)"


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a user object with a broken __repr__ must not break the worker
        return f"<{type(value).__name__} whose repr() failed>"
    return text if len(text) <= 80 else text[:77] + "..."


def _exception_text(exc: BaseException) -> str:
    """``Type: message``, even when the exception's ``__str__`` itself raises."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception as broken:
        return f"{name} (its message could not be rendered: {type(broken).__name__})"
    return f"{name}: {message}" if message else name


def route(job: Job, actions: ActionRegistry) -> ActionDefinition | Outcome:
    """The handler for ``job``, or a failure saying why there is none."""
    if job.payload_error is not None:
        return Outcome(
            error_code=ErrorCode.INVALID_PAYLOAD,
            error_message=_truncate(f"payload is not valid JSON: {job.payload_error}"),
        )
    payload = job.payload
    if not isinstance(payload, dict):
        return Outcome(
            error_code=ErrorCode.INVALID_PAYLOAD,
            error_message=f'payload must be a JSON object with an "action" string, got '
            f"{type(payload).__name__}: {_describe(payload)}",
        )
    name = payload.get("action")
    if not isinstance(name, str):
        got = 'no "action" field' if "action" not in payload else f"action={_describe(name)}"
        return Outcome(
            error_code=ErrorCode.INVALID_PAYLOAD,
            error_message=f'payload must have an "action" string naming the handler; {got}',
        )
    definition = actions.get(name)
    if definition is None:
        known = ", ".join(actions.names) or "none"
        return Outcome(
            error_code=ErrorCode.UNKNOWN_ACTION,
            error_message=_truncate(f"no action handler matched: {name} (known actions: {known})"),
        )
    return definition


#: How each input model reads a payload: its validator, and whether the payload must be
#: copied without the reserved keys first. Built once per model (models are classes).
_INPUT_READERS: dict[type[BaseModel], tuple[Callable[[Any], BaseModel], bool]] = {}


def _sees_reserved_keys(model: type[BaseModel]) -> bool:
    """Whether validating a payload that still holds the reserved keys (``action``,
    ``_trace``) could differ from validating it without them: the model keeps or refuses
    extra keys, is a root model, has a validator that sees the raw input, or has a field
    or alias that could read a reserved key."""
    if model.model_config.get("extra") not in (None, "ignore"):
        return True
    if getattr(model, "__pydantic_root_model__", False):
        return True
    validators = model.__pydantic_decorators__.model_validators.values()
    if any(d.info.mode != "after" for d in validators):
        return True
    for name, info in model.model_fields.items():
        if name in RESERVED_PAYLOAD_KEYS or info.alias in RESERVED_PAYLOAD_KEYS:
            return True
        alias = info.validation_alias
        if alias is not None and (not isinstance(alias, str) or alias in RESERVED_PAYLOAD_KEYS):
            return True
    return False


def _input_reader(model: type[BaseModel]) -> tuple[Callable[[Any], BaseModel], bool]:
    """(validate, copy without reserved keys first) for ``model``: its schema validator
    itself when ``model_validate`` is pydantic's own (the same call without a wrapper
    frame), and no copy of the payload when nobody could see the difference."""
    reader = _INPUT_READERS.get(model)
    if reader is None:
        validator = model.__pydantic_validator__
        own = getattr(model.model_validate, "__func__", None) is getattr(
            BaseModel.model_validate, "__func__", None
        )
        validate: Callable[[Any], BaseModel] = (
            validator.validate_python
            if own and isinstance(validator, SchemaValidator)
            else model.model_validate
        )
        reader = _INPUT_READERS[model] = (validate, _sees_reserved_keys(model))
    return reader


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return _truncate("invalid input: " + "; ".join(parts))


def json_ready(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is made only of dict (str keys), list, str, int, finite float,
    bool and None, so any JSON encoder writes it as it is."""
    # Exact type checks first (this runs on every result), isinstance for subclasses.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth > 200:
        return False
    if kind is dict or isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                return False
            if not json_ready(item, depth + 1):
                return False
        return True
    if kind is list or isinstance(value, list):
        for item in value:  # noqa: SIM110 - a plain loop: generators cost more per item
            if not json_ready(item, depth + 1):
                return False
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int))


def _serialize(result: Any) -> tuple[Any, str | None]:
    """The JSON-ready form of a handler's result, or an error message."""
    if isinstance(result, BaseModel):
        try:
            return result.model_dump(mode="json"), None
        except Exception as exc:  # a field pydantic cannot serialize
            return None, f"result model could not be serialized: {_exception_text(exc)}"
    if result is None or (isinstance(result, (dict, list)) and json_ready(result)):
        return result, None
    return None, (
        f"handler returned {type(result).__name__}: {_describe(result)}; return a pydantic "
        "BaseModel, or a dict/list of JSON values (str, int, finite float, bool, None)"
    )


def timeout_outcome(definition: ActionDefinition, timeout: float, runtime_ms: float) -> Outcome:
    """The outcome of a handler stopped at its timeout."""
    return Outcome(
        error_code=ErrorCode.TIMEOUT,
        error_message=f"handler did not finish within {timeout:g} s",
        retry=issubclass(TimeoutError, definition.options.retry_on),
        runtime_ms=runtime_ms,
    )


def cancelled_outcome(runtime_ms: float) -> Outcome:
    """The outcome of a handler stopped because an operator cancelled its job."""
    return Outcome(
        error_code=ErrorCode.CANCELLED,
        error_message="cancelled by an operator while it ran",
        runtime_ms=runtime_ms,
    )


async def execute_job(
    job: Job,
    definition: ActionDefinition,
    default_timeout: float,
    *,
    enforce_timeout: bool = True,
) -> Outcome:
    """Validate the input, call the handler under its timeout, serialize the result.

    With ``enforce_timeout=False`` the caller enforces the timeout itself (the worker
    cancels overdue jobs from one watchdog instead of arming a timer per job). A
    cancellation of the calling task propagates; a CancelledError the handler lets through
    while nobody cancelled the task is the handler's failure (HANDLER_ERROR).

    The worker runs the same steps inline (:func:`handler_kwargs`, the handler,
    :func:`handler_failed` or :func:`handler_returned`), one coroutine less per job.
    """
    started = time.perf_counter()
    kwargs = handler_kwargs(job, definition, started)
    if isinstance(kwargs, Outcome):
        return kwargs
    timeout = definition.options.timeout_seconds or default_timeout
    try:
        if enforce_timeout:
            async with asyncio.timeout(timeout):
                result = await definition.handler(**kwargs)
        else:
            result = await definition.handler(**kwargs)
    except TimeoutError as exc:
        if enforce_timeout:
            return timeout_outcome(definition, timeout, (time.perf_counter() - started) * 1000)
        return handler_failed(exc, definition, started)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise  # the worker stopped this job (it knows why): not an outcome of the handler
        return handler_failed(exc, definition, started)
    except (Exception, SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        return handler_failed(exc, definition, started)
    return handler_returned(result, timeout, started)


def handler_kwargs(
    job: Job, definition: ActionDefinition, started: float
) -> dict[str, Any] | Outcome:
    """The handler's keyword arguments for ``job`` (its validated input, services, job
    context), or the VALIDATION_ERROR :class:`Outcome` when the payload does not fit the
    input model (``started``: the attempt's ``perf_counter`` start, for its runtime)."""
    services = definition.bound_services
    kwargs: dict[str, Any] = services.copy() if services else {}
    model = definition.input_model
    if model is not None:
        validate, strip = _INPUT_READERS.get(model) or _input_reader(model)
        payload: dict[str, Any] = job.payload
        if strip:
            data = payload.copy()
            for key in RESERVED_PAYLOAD_KEYS:
                data.pop(key, None)
        else:
            data = payload  # read, never changed: extra keys are ignored by the model
        try:
            kwargs[definition.input_param] = validate(data)  # type: ignore[index]
        except ValidationError as exc:
            return Outcome(
                error_code=ErrorCode.VALIDATION_ERROR,
                error_message=_validation_message(exc),
                runtime_ms=(time.perf_counter() - started) * 1000,
            )
    if definition.context_param is not None:
        kwargs[definition.context_param] = JobContext(
            job.id, job.token, definition.name, job.attempts, job.max_attempts
        )
    return kwargs


def handler_failed(exc: BaseException, definition: ActionDefinition, started: float) -> Outcome:
    """The outcome of a handler that raised ``exc`` (not a stop of its job by the worker:
    a CancelledError here is one the handler let through while nobody cancelled the job,
    a TimeoutError one it raised itself, e.g. from a client call)."""
    runtime_ms = (time.perf_counter() - started) * 1000
    if isinstance(exc, TimeoutError):
        return Outcome(
            error_code=ErrorCode.HANDLER_ERROR,
            error_message=_truncate(f"TimeoutError: {exc}"),
            retry=issubclass(TimeoutError, definition.options.retry_on),
            runtime_ms=runtime_ms,
        )
    if isinstance(exc, RetryJob):
        return Outcome(
            error_code=ErrorCode.HANDLER_ERROR,
            error_message=_truncate(f"retry requested: {exc.reason}"),
            retry=True,
            retry_delay=exc.delay_seconds,
            runtime_ms=runtime_ms,
        )
    if isinstance(exc, asyncio.CancelledError):
        return Outcome(
            error_code=ErrorCode.HANDLER_ERROR,
            error_message=_truncate(
                f"{_exception_text(exc)} raised by the handler although the job was not "
                "cancelled (a task or future it awaited was cancelled)"
            ),
            retry=isinstance(exc, definition.options.retry_on),
            runtime_ms=runtime_ms,
        )
    return Outcome(
        error_code=ErrorCode.HANDLER_ERROR,
        error_message=_truncate(_exception_text(exc)),
        retry=isinstance(exc, definition.options.retry_on),
        runtime_ms=runtime_ms,
        retry_not_before=_circuit_wait(exc),
    )


def handler_returned(result: Any, timeout: float, started: float) -> Outcome:
    """The outcome of a handler that returned ``result``."""
    runtime_s = time.perf_counter() - started
    if runtime_s > timeout:
        # The handler blocked the event loop: the timer could not interrupt it.
        return Outcome(
            error_code=ErrorCode.TIMEOUT,
            error_message=f"handler ran {runtime_s:.1f} s, past its {timeout:g} s timeout, "
            "without yielding to the event loop; run blocking work with asyncio.to_thread",
            runtime_ms=runtime_s * 1000,
        )
    if result is None:  # most handlers return nothing
        return Outcome(runtime_ms=runtime_s * 1000)
    value, error = _serialize(result)
    if error is not None:
        return Outcome(
            error_code=ErrorCode.RESULT_NOT_SERIALIZABLE,
            error_message=_truncate(error),
            runtime_ms=runtime_s * 1000,
        )
    return Outcome(results=value, runtime_ms=runtime_s * 1000)


def _circuit_wait(exc: BaseException) -> float | None:
    """Seconds until the next trial of an open circuit that refused this attempt (the
    error itself or one it was raised from), else None."""
    seen: BaseException | None = exc
    for _ in range(10):  # a short chain: the handler's own wrapping
        if seen is None:
            return None
        if isinstance(seen, CircuitOpenError):
            return seen.retry_after
        seen = seen.__cause__ or seen.__context__
    return None
