"""Start SecantusDB (a MongoDB wire-protocol server on WiredTiger) as a test subprocess.

Run as a script it is the launcher: ``python secantus_server.py PORT STORAGE SWEEP`` starts
a server with a TTL sweep every SWEEP seconds (mongod's is 60 s) and test commands
(``configureFailPoint``) enabled, prints ``listening mongodb://HOST:PORT/`` and serves until
SIGTERM. Imported, :class:`SecantusProcess` manages such a subprocess.

SecantusDB is GPL-2.0-only: it is used only from the tests, never by the shipped package,
and it runs in its own process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["SecantusProcess", "SecantusUnavailableError", "secantus_missing_reason"]

_STARTUP_SECONDS = 60.0  # generous: the machine is shared and the first import is slow
_STOP_SECONDS = 10.0


class SecantusUnavailableError(RuntimeError):
    """The SecantusDB server could not be started."""


def secantus_missing_reason() -> str | None:
    """Why SecantusDB cannot be used here, or None when it is installed."""
    try:
        import secantus  # noqa: F401
    except ImportError as exc:
        return f"SecantusDB is not installed (secantusdb==0.7.0b3, dev group): {exc}"
    return None


class SecantusProcess:
    """One SecantusDB server process; it can be killed and restarted on the same port."""

    def __init__(self, workdir: Path, *, ttl_sweep_seconds: float = 1.0) -> None:
        self.workdir = workdir
        self.ttl_sweep_seconds = ttl_sweep_seconds
        self.port = 0  # random free port on the first start, the same one afterwards
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server and wait until it listens; raise SecantusUnavailableError otherwise."""
        self._starts += 1
        out = self.workdir / f"secantus-{self._starts}.out"
        err = self.workdir / f"secantus-{self._starts}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    str(self.port),
                    ":memory:",
                    str(self.ttl_sweep_seconds),
                ],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith("listening mongodb://"):
                    self.port = int(line.rsplit(":", 1)[1].strip("/"))
                    return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise SecantusUnavailableError(
            f"SecantusDB did not start (exit code {self._proc.returncode}); stderr:\n"
            + err.read_text(errors="replace")[-2000:]
        )

    def kill(self) -> None:
        """Crash the server (SIGKILL); its in-memory data is lost."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(_STOP_SECONDS)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it does not exit in time)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_SECONDS)


def _serve(port: int, storage_path: str, sweep: float) -> None:
    from secantus import SecantusDBServer

    server = SecantusDBServer(
        host="127.0.0.1",
        port=port,
        storage_path=storage_path,
        ttl_sweep_seconds=sweep,
        enable_test_commands=True,
    )

    def bye(*_: object) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    server.start()
    print(f"listening {server.uri}", flush=True)
    server.wait()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
