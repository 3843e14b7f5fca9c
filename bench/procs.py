"""Server processes for the cases that measure a running service: started as a user starts
them, polled over real HTTP, measured through ``/proc`` and stopped with SIGTERM."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from harness import child_env

__all__ = ["ServerProcess", "callgrind_instructions", "free_port", "proc_status_kb"]

# Settings a developer's shell may export; the cases set what they need explicitly.
_OWN_PREFIXES = ("MICROSERVICE", "QUEUE_", "DEV_", "HTTP_", "ORACLE_", "MONGODB_", "LOG_", "BENCH_")


def callgrind_instructions(argv: list[str], out_file: str) -> int:
    """Instructions ``argv`` ran under callgrind (every thread), its profile written to
    ``out_file``; an error with callgrind's last words when it printed no count."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"no counts from callgrind: {run.stderr[-500:]}")
    return int(found.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory field in kB (``VmRSS``, ``VmHWM`` = peak RSS).

    Linux's own accounting is all the memory case needs, so no psutil dependency.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


class ServerProcess:
    """``python <script>`` in ``cwd`` with ``env`` on a free port; output goes to a temp file."""

    def __init__(
        self,
        cwd: Path,
        script: str,
        env: dict[str, str],
        args: list[str] | None = None,
        *,
        bytecode_cache: bool = True,
    ):
        self.port = free_port()
        base = child_env(bytecode_cache=bytecode_cache)
        full_env = {k: v for k, v in base.items() if not k.startswith(_OWN_PREFIXES)}
        full_env.update({"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(self.port), **env})
        fd, name = tempfile.mkstemp(prefix="usvc-bench-", suffix=".log")
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "w")
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, script, *(args or [])],
            cwd=cwd,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and self.proc.poll() is None:
            # What the server said is usually what explains the failure.
            exc.add_note(f"output of {self.proc.args!r} (last lines):\n{self.output()[-3000:]}")
        self.stop()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0, interval: float = 0.005) -> float:
        """Poll ``GET /health`` until it answers 200; return seconds since the process start."""
        deadline = self.started + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args!r} exited early:\n{self.output()[-2000:]}")
            # http.client, not a new httpx.Client per poll: building one costs ~35 ms of CPU
            # (its SSL context), so the poller kept a CPU busy while the service started.
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return time.perf_counter() - self.started
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.url}/health not 200 within {timeout:g} s")
            time.sleep(interval)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (load-independent, unlike
        wall time on a shared machine)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        return proc_status_kb(self.proc.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        return proc_status_kb(self.proc.pid, "VmHWM")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
            self.log_path.unlink(missing_ok=True)
        return self.proc.returncode
