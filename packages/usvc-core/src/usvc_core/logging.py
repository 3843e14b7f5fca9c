"""One structlog pipeline for the kit's logs and the standard library's (uvicorn, httpx, ...).

Every line logged while a job runs carries ``token``, ``job_id`` and ``action``: the worker
binds them in the job's own task context (``structlog.contextvars``), so concurrent jobs
never see each other's token and nothing leaks into the next job.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["add_processor", "configure_logging", "logger"]

#: The kit's logger; ``logger.info("event", key=value)``.
logger: structlog.stdlib.BoundLogger = structlog.get_logger("usvc")

_STDLIB_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")
_extra_processors: list[structlog.typing.Processor] = []


def _drop_color_message(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.pop("color_message", None)  # uvicorn's ANSI copy of the message
    return event_dict


def add_processor(processor: structlog.typing.Processor) -> None:
    """Add a processor to the shared chain (e.g. the OTLP log bridge); call before
    ``configure_logging``."""
    _extra_processors.append(processor)


def configure_logging(
    *, json: bool = False, debug: bool = False, stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging through one renderer: JSON lines or console."""
    level = logging.DEBUG if debug else logging.INFO
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *_extra_processors,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final: list[structlog.typing.Processor] = (
        [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
        if json
        else [structlog.dev.ConsoleRenderer(colors=False)]
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _STDLIB_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("httpcore").setLevel(logging.WARNING)
