"""Append one line per handler execution to ``RELIABILITY_RECORD_FILE`` (if set).

Each line is one ``os.write`` on an ``O_APPEND`` descriptor, so lines written by several
worker processes never interleave, and a SIGKILL leaves at most the lines already written.
Format: ``<S|E> <job_id> <pid> <unix time>`` (S = handler started, E = handler returned).
"""

from __future__ import annotations

import os
import time

_fd: int | None = None


def record(mark: str, job_id: str) -> None:
    global _fd  # one descriptor per process, opened on first use
    path = os.environ.get("RELIABILITY_RECORD_FILE")
    if not path:
        return
    if _fd is None:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{mark} {job_id} {os.getpid()} {time.time():.6f}\n".encode())


def started_before(job_id: str) -> bool:
    """Whether some process recorded a start of ``job_id`` already."""
    path = os.environ.get("RELIABILITY_RECORD_FILE")
    if not path or not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as lines:
        return any(line.startswith(f"S {job_id} ") for line in lines)
