"""The PostgreSQL server of the postgres bench scripts: the one given with ``--url``, or a
temporary PostgreSQL cluster started for the run with the tests' ``PgServer``
(packages/usvc-postgres/tests/pgserver.py: initdb into a temporary directory, ``fsync`` and
``synchronous_commit`` on, removed at the end).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1] / "packages" / "usvc-postgres" / "tests"
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from pgserver import PgServer, skip_reason  # noqa: E402

__all__ = ["Postgres", "postgres", "unavailable"]


def unavailable(url: str | None) -> str | None:
    """Why no server can be had here (no ``--url`` and no PostgreSQL binaries), or None."""
    return None if url else skip_reason()


@dataclass(frozen=True, slots=True)
class Postgres:
    """The server a script runs against."""

    url: str
    #: the postmaster's PID when this process started the server (None for ``--url``)
    pid: int | None = None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the whole server has used so far: the postmaster, its
        live processes (backends, parallel workers, autovacuum, checkpointer, WAL writer)
        and the ones it reaped; None for a server given with ``--url`` or without /proc."""
        if self.pid is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        try:
            # utime, stime, cutime, cstime: the 14th to 17th fields of /proc/<pid>/stat.
            total = sum(int(f) for f in _stat(self.pid)[11:15])
        except OSError:
            return None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = _stat(int(entry.name))
            except OSError:
                continue  # gone meanwhile: reaped, so counted in the postmaster's cutime
            if fields[1] == str(self.pid):
                total += int(fields[11]) + int(fields[12])
        return total / tick


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ... (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


@contextlib.contextmanager
def postgres(url: str | None = None) -> Iterator[Postgres]:
    """The server at ``url``, or a temporary server that lives as long as the block."""
    if url:
        yield Postgres(url)
        return
    server = PgServer()
    try:
        server.init()
        server.start()
        yield Postgres(server.url, server.pid)
    finally:
        server.remove()
