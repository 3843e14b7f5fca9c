"""Fixtures for every test of the workspace: put process-wide logging state back after each
test, so no test depends on which tests ran before it in the same process."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy
from usvc_core import logging as usvc_logging


def _uncache_loggers() -> None:
    """Forget the assembled loggers that module-level ``structlog.get_logger()`` proxies
    cached while ``cache_logger_on_first_use`` was on (``configure_logging`` turns it on):
    a cached proxy keeps the processors and output of the configuration it was cached
    under, so a later ``capture_logs()`` or ``reset_defaults()`` would not reach it.
    structlog caches by setting ``bind`` on the proxy instance; removing it reassembles."""
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("usvc", "test_", "tests")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, BoundLoggerLazyProxy):
                value.__dict__.pop("bind", None)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """structlog's configuration, the kit's cached loggers and its ``_Output`` (the level
    ``is_enabled_for`` reads, the handler the kit's lines go to), the stdlib root and the
    library loggers ``configure_logging`` rewires: as they were before the test."""
    config = structlog.get_config()
    processors = list(config["processors"])
    output = {k: v for k, v in vars(usvc_logging._Output).items() if not k.startswith("__")}
    extra = usvc_logging._extra_processors
    saved: dict[str, tuple[list[logging.Handler], int, bool]] = {}
    for name in ("", *usvc_logging._STDLIB_LOGGERS):
        lg = logging.getLogger(name or None)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate)
    yield
    config["processors"] = processors
    structlog.configure(**config)
    _uncache_loggers()
    structlog.contextvars.clear_contextvars()
    for key, value in output.items():
        setattr(usvc_logging._Output, key, value)
    usvc_logging._extra_processors = extra
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name or None)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
