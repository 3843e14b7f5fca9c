"""One structlog pipeline for the kit's logs and the standard library's (uvicorn, httpx,
oracledb, pymongo, asyncio, ...): one format (JSON lines or console) for every line.

Every line logged while a job runs carries ``token``, ``job_id`` and ``action``: the worker
binds them in the job's own task context (``structlog.contextvars``), which code the handler
calls, services and ``asyncio.to_thread`` threads share (``loop.run_in_executor`` does not
copy the context: wrap the call with ``contextvars.copy_context().run``). Concurrent jobs
never see each other's token and nothing leaks into the next job.

Processors added with :func:`add_processor` (the OTLP log export) run on every line after
the context, level, logger name and timestamp are in the event; they are looked up per
line, so adding one after :func:`configure_logging` (or after a logger was cached) works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as _json
import logging
import sys
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO

import structlog
import structlog.tracebacks

__all__ = [
    "add_processor",
    "bind_job_context",
    "configure_logging",
    "is_enabled_for",
    "log_info",
    "logger",
    "remove_processor",
]

#: The kit's logger; ``logger.info("event", key=value)``.
logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("usvc")

#: Libraries whose own handlers are removed so their lines go through our renderer.
_STDLIB_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "httpx",
    "httpcore",
    "oracledb",
    "pymongo",
    "asyncio",
)
#: Too chatty below these levels even with DEBUG=True (wire-level detail; httpx's INFO is
#: one line per request, which the REST services' own spans and metrics already cover).
_LEVEL_FLOORS = {"httpcore": logging.WARNING, "httpx": logging.WARNING, "pymongo": logging.INFO}
# A tuple, replaced whole on change, so a line being logged in another thread never sees
# a list mid-update.
_extra_processors: tuple[structlog.typing.Processor, ...] = ()


def _drop_color_message(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's ANSI copy of the message
    return event_dict


def _run_extra_processors(
    logger: Any, name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for processor in _extra_processors:
        event_dict = processor(logger, name, event_dict)  # type: ignore[assignment]
    return event_dict


def add_processor(processor: structlog.typing.Processor) -> None:
    """Run ``processor`` on every line from now on (e.g. the OTLP log export)."""
    global _extra_processors  # noqa: PLW0603 - the registry is process-wide like logging's
    _extra_processors = (*_extra_processors, processor)


def remove_processor(processor: structlog.typing.Processor) -> None:
    """Undo :func:`add_processor` (no error when it is not there)."""
    global _extra_processors  # noqa: PLW0603
    _extra_processors = tuple(p for p in _extra_processors if p is not processor)


class _Output:
    """What the last ``configure_logging`` chose. Loggers cached before a reconfiguration
    read it on every line, so they follow the new level, renderer and stream."""

    level: int = logging.INFO
    handler: logging.StreamHandler[TextIO] | None = None
    #: the kit's lines: every processor after the level filter (the general path)
    chain: tuple[structlog.typing.Processor, ...] = ()
    #: the renderers at the end of both pipelines
    final: tuple[structlog.typing.Processor, ...] = ()
    json: bool = False
    #: console lines: whether the plain ones take _console_line (else ConsoleRenderer)
    console_fast: bool = False


#: structlog's context variables for a job's keys, taken from the tokens of the first bind
#: (``Token.var``): later jobs set them directly, without structlog's per-key name
#: formatting and lookups. They are the variables ``merge_contextvars`` reads, so handlers
#: and their code see the keys exactly as after ``bind_contextvars``.
_job_vars: list[ContextVar[Any]] = []


def bind_job_context(token: str, job_id: str, action: str) -> None:
    """``structlog.contextvars.bind_contextvars(token=..., job_id=..., action=...)``, made
    cheap for the worker's once-per-job call (in the job task's own context)."""
    if not _job_vars:
        bound = structlog.contextvars.bind_contextvars(token=token, job_id=job_id, action=action)
        _job_vars[:] = [bound["token"].var, bound["job_id"].var, bound["action"].var]
        return
    token_var, id_var, action_var = _job_vars
    token_var.set(token)
    id_var.set(job_id)
    action_var.set(action)


#: structlog's registry of its context variables ("structlog_" + key -> ContextVar), a
#: private name: read directly, a line costs one ``get`` per key ever bound, instead of
#: ``merge_contextvars``' copy of the whole context and walk over every variable in it
#: (OpenTelemetry's, asyncio's, ...). A structlog without it gets ``merge_contextvars``.
_STRUCTLOG_VARS: dict[str, ContextVar[Any]] | None = getattr(
    structlog.contextvars, "_CONTEXT_VARS", None
)
_PREFIX = structlog.contextvars.STRUCTLOG_KEY_PREFIX


class _Bound:
    """The registry's variables as (key, variable) pairs and the registry's size they were
    taken at, one tuple (threads replace it whole); rebuilt when the registry grows
    (structlog only ever adds to it: its size tells whether the copy is current)."""

    state: tuple[int, tuple[tuple[str, ContextVar[Any]], ...]] = (-1, ())


def _merge_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``merge_contextvars``: the keys bound in this context (not cleared, i.e. not set to
    ``...``) that the event does not have, in the order they were first bound anywhere
    (``merge_contextvars``' order is its context's hash order, which varies by process).
    The kit's lines and the stdlib's records all take this one, so they share the order."""
    registry = _STRUCTLOG_VARS
    if registry is None:
        return structlog.contextvars.merge_contextvars(logger, method_name, event_dict)
    size, pairs = _Bound.state
    if len(registry) != size:
        items = list(registry.items())  # one C call: a bind in another thread waits
        pairs = tuple(
            (name[len(_PREFIX) :], var) for name, var in items if name.startswith(_PREFIX)
        )
        _Bound.state = (len(items), pairs)
    for key, var in pairs:
        value = var.get(...)
        if value is not ... and key not in event_dict:
            event_dict[key] = value
    return event_dict


def is_enabled_for(level: int) -> bool:
    """Whether the kit's lines at ``level`` are written (to skip building a line at all)."""
    return level >= _Output.level


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _render(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    result: Any = event_dict
    for processor in _Output.final:
        result = processor(logger, method_name, result)
    return result


# Tracebacks as JSON, without the frames' local variables: they may hold passwords, tokens
# or payloads, and log lines travel further than the process.
_JSON_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)

#: Keys that need the general path (tracebacks, stack dumps); the rest takes the fast one.
_GENERAL_KEYS = frozenset({"exc_info", "exception", "stack_info", "color_message"})
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


class _Second:
    """The formatted UTC second of the last timestamp (one strftime per second, not per line)."""

    value = -1
    text = ""


def _utc_timestamp() -> str:
    """Now as ISO 8601 UTC with microseconds, like TimeStamper(fmt="iso", utc=True)."""
    now = time.time()
    second = int(now)
    if second != _Second.value:
        _Second.text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _Second.value = second
    # %d truncates the float as int() does; a quarter cheaper than f"{int(...):06d}".
    return "%s%06dZ" % (_Second.text, (now - second) * 1_000_000)  # noqa: UP031


def _json_default(value: Any) -> Any:
    """What structlog's JSONRenderer does with values JSON cannot hold."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


# Built once: json.dumps(..., default=...) builds a new encoder on every call.
_ENCODER = _json.JSONEncoder(default=_json_default)
# The C encoder under it, built once with JSONEncoder's defaults (", " and ": ", ASCII,
# NaN allowed): JSONEncoder.encode rebuilds it and a float formatter on every call, 40% of
# its cost. No circular-reference bookkeeping: a cyclic value raises RecursionError instead
# of ValueError, a bug in the caller either way.
_c_make_encoder = getattr(_json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    _c_make_encoder(
        None,
        _json_default,
        _json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    if _c_make_encoder is not None
    else None
)


def _encode(event_dict: Any) -> str:
    if _C_ENCODE is None:  # a Python without the _json accelerator
        return _ENCODER.encode(event_dict)
    return "".join(_C_ENCODE(event_dict, 0))


#: Keys ConsoleRenderer puts in columns of their own or on lines of their own.
_CONSOLE_GENERAL_KEYS = frozenset({"stack", "exception", "exc_info", "logger_name"})
#: ConsoleRenderer(colors=False)'s layout: level padded to its longest name ("exception"),
#: the event to 30 characters; a string value with one of these characters is repr()'d.
_LEVEL_WIDTH = len("exception")
_EVENT_WIDTH = 30
_CONSOLE_QUOTED = frozenset(" \t=\r\n\"'")


def _console_line(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """What ``ConsoleRenderer(colors=False)`` writes for a line without a traceback or a
    stack, character for character, at a third of its cost (a StringIO and a formatter
    object per column there; the console line per job in dev mode is most of a /dev/job's
    logging cost). Anything else goes to the renderer itself."""
    level = event_dict.get("level")
    if not _CONSOLE_GENERAL_KEYS.isdisjoint(event_dict) or type(level) is not str:
        return _render(logger, method_name, event_dict)
    del event_dict["level"]
    # Columns first (an empty one is left out), then key=value sorted by key; a string
    # value as it is unless it holds a space, quote, "=" or line break.
    timestamp = str(event_dict.pop("timestamp", ""))
    column = f"[{level:<{_LEVEL_WIDTH}}]"
    parts = [timestamp, column] if timestamp else [column]
    if "event" in event_dict:
        parts.append(f"{event_dict.pop('event')!s:<{_EVENT_WIDTH}}")
    if "logger" in event_dict:
        parts.append(f"[{event_dict.pop('logger')!s}]")
    return _console_pairs(parts, event_dict)


def _console_pairs(parts: list[str], event_dict: MutableMapping[str, Any]) -> str:
    """The line: ``parts``, then key=value sorted by key; a string value as it is unless
    it holds a space, quote, "=" or line break."""
    for key in sorted(event_dict):
        value = event_dict[key]
        if isinstance(value, str) and _CONSOLE_QUOTED.isdisjoint(value):
            parts.append(key + "=" + value)
        else:
            parts.append(f"{key}={value!r}")
    return " ".join(parts).rstrip(" ")


#: A kit line's keys that _console_job_line leaves to _console_line: the columns it would
#: overwrite, and what the renderer itself handles.
_CONSOLE_SET_KEYS = _CONSOLE_GENERAL_KEYS | {"level", "logger", "timestamp"}
_LEVEL_COLUMNS = {
    name: f"[{name:<{_LEVEL_WIDTH}}]" for name in _LEVELS.keys() - _LEVEL_NAMES.keys()
}


def _console_job_line(logger: Any, event_dict: MutableMapping[str, Any], level: str) -> str | None:
    """``_console_line`` of ``event_dict`` with ``level``, ``logger``'s name and now's
    timestamp added, without adding them to pop them again: the columns in one string.
    None for an event without an event or with a key it would overwrite."""
    if "event" not in event_dict or not _CONSOLE_SET_KEYS.isdisjoint(event_dict):
        return None
    event = event_dict.pop("event")
    # str.ljust: what the "<30" format does to a str, without parsing a format spec.
    text = event.ljust(_EVENT_WIDTH) if type(event) is str else f"{event!s:<{_EVENT_WIDTH}}"
    column = _LEVEL_COLUMNS.get(level) or f"[{level:<{_LEVEL_WIDTH}}]"
    return _console_pairs([f"{_utc_timestamp()} {column} {text} [{logger.name!s}]"], event_dict)


def _kit_line(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The kit's own lines, all processors in one call.

    The common line (no traceback, no stack) does in one function what the general chain
    does in nine: the same keys in the same order, the same JSON or console text. Its cost
    matters: the worker writes one line per job, and the chain took about 40 us of it
    (JSON; the console renderer 60 us more), as much as the rest of a small job's overhead.
    """
    if _LEVELS.get(method_name, logging.INFO) < _Output.level:
        raise structlog.DropEvent
    if not (_Output.json or _Output.console_fast) or not _GENERAL_KEYS.isdisjoint(event_dict):
        result: Any = event_dict
        for processor in _Output.chain:
            result = processor(logger, method_name, result)
        return result
    _merge_context(logger, method_name, event_dict)
    level = _LEVEL_NAMES.get(method_name, method_name)
    if not (_Output.json or _extra_processors):
        line = _console_job_line(logger, event_dict, level)
        if line is not None:
            return line
    event_dict["level"] = level
    event_dict["logger"] = logger.name
    event_dict["timestamp"] = _utc_timestamp()
    if _extra_processors:
        event_dict = _run_extra_processors(logger, method_name, event_dict)
    if _Output.json:
        return _encode(event_dict)
    return _console_line(logger, method_name, event_dict)


#: What ``configure_logging`` gives structlog, to recognise a logger that runs the kit's
#: pipeline alone (and nothing a user configured since).
_KIT_PROCESSORS: list[structlog.typing.Processor] = [_kit_line]
# Any: log_info reads the bound logger's fields.
_KIT_WRAPPER: Any = structlog.make_filtering_bound_logger(logging.DEBUG)
_LAZY_PROXY = type(structlog.get_logger())


def log_info(log: Any, event: str, **kw: Any) -> None:
    """``log.info(event, **kw)``, for a once-per-job line: when ``log`` (a structlog logger
    or ``structlog.get_logger()``'s proxy) runs the kit's own pipeline, straight into it,
    without the bound logger's three layers (``info``, ``_proxy_to_logger``,
    ``_process_event``); the same line either way. Any other configuration (a user's
    ``structlog.configure`` after the kit's, a context bound on the logger) takes
    ``log.info`` itself."""
    bound = log.bind() if type(log) is _LAZY_PROXY else log  # the proxy's cached logger
    if (
        type(bound) is not _KIT_WRAPPER
        or bound._context  # structlog puts these first: left to it
        or bound._processors != _KIT_PROCESSORS
    ):
        bound.info(event, **kw)
        return
    kw["event"] = event  # the keys in _process_event's order: the keywords, then the event
    writer = bound._logger
    try:
        line = _kit_line(writer, "info", kw)
    except structlog.DropEvent:
        return
    if type(writer) is _LineWriter:
        _write(line, _running_loop())  # _LineWriter.info
    else:
        writer.info(line)


class _LineWriter:
    """The end of the kit's own pipeline: writes rendered lines to the stdlib handler's
    stream under the handler's lock, so both kinds of line interleave whole.

    Our lines skip the standard library's LogRecord round trip (two records, a caller
    lookup, a formatter pass: most of a line's cost); stdlib records still take it, through
    the same processors and renderer, so every line has one format.

    DEBUG and INFO lines written on a running event loop are flushed once per loop turn
    (the first line of a turn schedules the flush), not once per line: a write system call
    per job, which also hands the GIL to the queue's threads, cost the SQLite drain about
    7 % of its CPU. They wait in the stream's buffer, ahead of anything written after them
    (a stdlib record flushes them with its own), and reach the stream's file by the next
    turn of the loop; lines of a thread without a running loop, and WARNING and above, are
    flushed at once, and closing the handler (``logging.shutdown`` at exit) flushes.
    """

    def __init__(self, name: str) -> None:
        self.name = name  # read by structlog.stdlib.add_logger_name

    def msg(self, line: str) -> None:
        _write(line, _running_loop())

    def now(self, line: str) -> None:
        """A line flushed at once (WARNING and above)."""
        _write(line, None)

    debug = info = msg
    log = warn = warning = error = critical = exception = fatal = now


def _write(line: str, loop: asyncio.AbstractEventLoop | None) -> None:
    """One line to the handler's stream: flushed at once without a loop, else by the
    loop's next turn (see _LineWriter)."""
    handler = _Output.handler
    if handler is None:
        sys.stdout.write(line + "\n")
        return
    # The handler's own lock, held as acquire()/flush()/release() hold it (one line per
    # job: their three method calls and the lock taken twice are skipped).
    lock = handler.lock
    assert lock is not None  # Handler.__init__ creates it
    with lock:
        handler.stream.write(line + "\n")
        if loop is None:
            handler.stream.flush()
        elif loop not in _flush_pending:
            _flush_pending.add(loop)
            loop.call_soon(_flush_turn, loop)


#: Loops with a flush of the kit's lines scheduled for their next turn (each loop's entry
#: is added and removed on its own thread).
_flush_pending: set[asyncio.AbstractEventLoop] = set()
_running_loop = asyncio._get_running_loop


def _flush_turn(loop: asyncio.AbstractEventLoop) -> None:
    """The flush of the lines a loop turn wrote (see _LineWriter). The current handler's:
    configure_logging flushes the one it replaces."""
    _flush_pending.discard(loop)
    if _Output.handler is not None:
        _flush(_Output.handler)


def _flush(handler: logging.StreamHandler[TextIO]) -> None:
    with contextlib.suppress(ValueError):  # a stream closed since: closing flushed it
        handler.flush()


class _Handler(logging.StreamHandler[TextIO]):
    """The stdlib handler every line goes through; closing it flushes the kit's lines
    still in its stream's buffer (``logging.shutdown`` flushes before it closes)."""

    def close(self) -> None:
        _flush(self)
        super().close()


def _line_writer(*args: Any) -> _LineWriter:
    return _LineWriter(str(args[0]) if args and args[0] is not None else "usvc")


def configure_logging(
    *,
    json: bool = False,
    debug: bool = False,
    stream: TextIO | None = None,
    level: int | None = None,
) -> None:
    """Route structlog and stdlib logging through one renderer: JSON lines or console.

    Process-wide (like :mod:`logging`): the last call wins, also for loggers already in
    use. ``stream`` defaults to stdout; ``level`` overrides the one ``debug`` picks.
    """
    if level is None:
        level = logging.DEBUG if debug else logging.INFO
    shared: list[structlog.typing.Processor] = [
        _merge_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _run_extra_processors,
    ]
    final: list[structlog.typing.Processor] = (
        [_JSON_TRACEBACKS, structlog.processors.JSONRenderer()]
        if json
        else [structlog.dev.ConsoleRenderer(colors=False)]
    )
    if _Output.handler is not None:
        _flush(_Output.handler)  # the old stream's lines go out before the new one's
    handler = _Handler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    _Output.level, _Output.handler, _Output.final = level, handler, tuple(final)
    _Output.json = json
    _Output.console_fast = not json
    _Output.chain = (
        *[p for p in shared if not isinstance(p, structlog.stdlib.ExtraAdder)],
        structlog.processors.StackInfoRenderer(),
        _render,
    )
    # The kit's own lines: dropped below the level before any other work, rendered by the
    # same processors (_kit_line), written by _LineWriter.
    structlog.configure(
        processors=list(_KIT_PROCESSORS),
        logger_factory=_line_writer,
        wrapper_class=_KIT_WRAPPER,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _STDLIB_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
        lg.setLevel(max(level, _LEVEL_FLOORS.get(name, logging.NOTSET)))
