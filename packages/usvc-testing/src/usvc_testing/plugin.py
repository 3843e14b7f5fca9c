"""pytest plugin (entry point ``pytest11: usvc``): what a service's tests need with no
configuration of their own, and prefixed fixtures.

With ``uv add --dev "usvc-testing[pytest]"`` and nothing else:

- ``async def`` tests (and async fixtures) run: the extra brings pytest-asyncio, and this
  plugin sets ``asyncio_mode = auto`` (and a function-scoped fixture loop) unless the
  project chose its own;
- the layout ``src/actions`` + ``src/services`` imports as ``from src.services...`` (as
  when ``main.py`` runs from the project's directory): the rootdir goes on ``sys.path``;
- settings built in a test read no ``.env``: a developer's own file (a real ``QUEUE_URL``,
  an HTTP port) never leaks into a test; pass ``_env_file=".env"`` to read one.

Imports of the kit happen in ``pytest_configure`` and inside the fixtures, so loading the
plugin does not import ``usvc_core`` before coverage measurement starts.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from usvc_testing.clock import FakeClock
    from usvc_testing.otlp import OtlpReceiver
    from usvc_testing.queues.memory import InMemoryQueue

__all__ = ["pytest_configure", "pytest_unconfigure"]

pytest.register_assert_rewrite("usvc_testing.contract")

#: ini options of pytest-asyncio this plugin fills when the project left them unset.
_ASYNCIO_DEFAULTS = {"asyncio_default_fixture_loop_scope": "function"}


def _ini_is_set(config: pytest.Config, name: str) -> bool:
    """Whether the project's configuration file (or ``-o``) sets ``name``."""
    # pytest >= 9 keeps the parsed file in ``_inicfg``; older ones in ``inicfg``.
    raw: Any = getattr(config, "_inicfg", None)
    if raw is None:
        raw = getattr(config, "inicfg", {})
    return name in raw


def _configure_asyncio(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("asyncio"):
        return  # pytest-asyncio is absent: the project runs its tests its own way
    if config.getoption("asyncio_mode", None) is None and not _ini_is_set(config, "asyncio_mode"):
        config.option.asyncio_mode = "auto"
    cache: Any = getattr(config, "_inicache", None)
    for name, value in _ASYNCIO_DEFAULTS.items():
        if cache is not None and not _ini_is_set(config, name):
            # getini reads this cache first; set before pytest-asyncio looks (tryfirst).
            cache[name] = value


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _configure_asyncio(config)
    # ``from src.services...`` as when main.py runs from the project's directory.
    root = str(config.rootpath)
    if (config.rootpath / "src").is_dir() and root not in sys.path:
        sys.path.insert(0, root)
    from usvc_core.settings import default_env_file, use_env_file

    config.stash[_ENV_FILE_KEY] = default_env_file()
    use_env_file(None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ENV_FILE_KEY in config.stash:
        from usvc_core.settings import use_env_file

        use_env_file(config.stash[_ENV_FILE_KEY])


_ENV_FILE_KEY = pytest.StashKey[Any]()


@pytest.fixture
def usvc_fake_clock() -> FakeClock:
    """A clock that moves only when the test calls ``advance``."""
    from usvc_testing.clock import FakeClock

    return FakeClock()


@pytest.fixture
def usvc_memory_queue(usvc_fake_clock: FakeClock) -> InMemoryQueue:
    """An empty in-memory queue on the fake clock."""
    from usvc_testing.queues.memory import InMemoryQueue

    return InMemoryQueue(usvc_fake_clock)


@pytest.fixture
def usvc_otlp_receiver() -> Iterator[OtlpReceiver]:
    """A started in-process OTLP/gRPC receiver (needs ``usvc-testing[otlp]``)."""
    from usvc_testing.otlp import OtlpReceiver  # lazy: grpcio is an optional extra

    with OtlpReceiver() as receiver:
        yield receiver
