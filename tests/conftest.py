"""Shared helpers for end-to-end tests: free ports, service subprocesses, waiting."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Tests that start ``bash scripts/dev.sh example``: one at a time under pytest-xdist (one
#: worker runs the group), because each runs ``uv sync`` on the shared environment and
#: writes examples/greeting/.env.
DEV_SH_EXAMPLE = pytest.mark.xdist_group("dev_sh_example")


#: Ports this process handed out: never handed out twice (a stopped service's port may
#: still be in TIME_WAIT, or about to be taken again by the OS for another test).
_handed_out: set[int] = set()


def _xdist_slot() -> tuple[int, int]:
    """(this worker's index, number of workers) under pytest-xdist; (0, 1) otherwise."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return index, max(count, 1)


def free_port() -> int:
    """A free local port for a service a test starts. Under pytest-xdist each worker only
    takes its share of the ports (``p // 2 % workers == its index``: Linux hands out odd
    ports to ``bind(0)``), so two workers never pick the same port in the moment between
    this check and the service binding it."""
    index, count = _xdist_slot()
    for _ in range(10_000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port // 2 % count == index and port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free local port found")


def wait_until(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class ServiceProcess:
    """A service started as a user starts it: ``python main.py`` in its directory."""

    def __init__(
        self, cwd: Path, env: dict[str, str], script: str = "main.py", argv: list[str] | None = None
    ) -> None:
        self.port = int(env.get("HTTP_PORT") or free_port())
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MICROSERVICE", "QUEUE_", "DEV_", "HTTP_", "ORACLE_", "MONGODB_"))
        }
        full_env.update({"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(self.port), **env})
        self.log_path = Path(tempfile.mkdtemp(prefix="usvc-service-")) / f"{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            argv or [sys.executable, script],
            cwd=cwd,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: stop() also ends what a launcher (dev.sh, uv run) started.
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited early:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


@pytest.fixture
def service() -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(
        cwd: Path, env: dict[str, str], script: str = "main.py", argv: list[str] | None = None
    ) -> ServiceProcess:
        proc = ServiceProcess(cwd, env, script, argv)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
