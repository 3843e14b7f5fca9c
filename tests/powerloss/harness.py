"""The power-loss suite's machinery: the lazy filesystem's mount, the processes on it, the
acknowledgement journal and the checks of the queue file against it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CONTROL",
    "LAZYFS",
    "SERVICE_DIR",
    "UNFINISHED",
    "Ack",
    "Audit",
    "LazyMount",
    "Row",
    "audit",
    "fuse_unavailable",
    "kill_all",
    "read_journal",
    "read_rows",
]

HERE = Path(__file__).resolve().parent
LAZYFS = HERE / "lazyfs.py"
CONTROL = ".lazyfs-cut"  # lazyfs.CONTROL (lazyfs.py runs as a script: not imported here)
SERVICE_DIR = HERE / "service"
UNFINISHED = ("Ready", "Assigned", "Processing")


def fuse_unavailable() -> str | None:
    """Why FUSE cannot run here, or None when it can."""
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse on this machine (FUSE is not available)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except ImportError as exc:  # the binding, or libfuse3 it loads
        return f"the FUSE binding mfusepy cannot load: {exc} (uv sync; apt-get install fuse3)"
    except OSError as exc:
        return f"libfuse cannot load: {exc} (apt-get install fuse3)"
    return None


class LazyMount:
    """The lazy filesystem (``lazyfs.py``) mounted on ``root/mnt``, its disk in ``root/store``.

    :meth:`cut` is the power cut: SIGKILL the filesystem process, so that what it held
    unsynced is gone, then detach the dead mount. :meth:`start` powers on again."""

    def __init__(self, root: Path) -> None:
        self.store = root / "store"
        self.mnt = root / "mnt"
        self.log = root / "lazyfs.log"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.cuts = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(LAZYFS), str(self.store), str(self.mnt)],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 15
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None:
                raise RuntimeError(f"lazyfs exited with {self.proc.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"lazyfs did not mount within 15 s: {self._tail()}")
            time.sleep(0.02)

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def cut(
        self, keep: float = 0.0, seed: int = 0, *, sector: bool = False, meta: bool = False
    ) -> None:
        """Power cut: everything not synced is lost at this instant, except, with ``keep``,
        that share of the unsynced blocks (chosen at random, ``seed``). ``sector``: the
        share is of 512-byte sectors, so blocks tear; ``meta``: sizes and names reach the
        disk without the data (see lazyfs.py)."""
        assert self.proc is not None
        if keep or sector or meta:
            order = f"keep={keep} seed={seed} sector={int(sector)} meta={int(meta)}"
            # The filesystem serves one request at a time: this one is its last.
            with contextlib.suppress(OSError):  # it exits without answering
                self._control(order)
            self.proc.wait(10)
        else:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        self.cuts += 1
        self._detach(lazy=True)

    def fail_fsyncs(self, count: int) -> None:
        """The next ``count`` fsyncs fail with EIO, dropping the dirty blocks (lazyfs.py)."""
        self._control(f"eio={count}")

    def _control(self, order: str) -> None:
        fd = os.open(self.mnt / CONTROL, os.O_WRONLY | os.O_CREAT)
        try:
            os.write(fd, order.encode())
        finally:
            os.close(fd)

    def stop(self) -> None:
        """Unmount cleanly (only after every process on the mount has stopped)."""
        if self.proc is None:
            self._detach(lazy=True)
            return
        self._detach(lazy=False)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def mounted(self) -> bool:
        """Whether anything is mounted on ``mnt`` (a dead FUSE mount fails ``stat``, so
        ``os.path.ismount`` cannot tell)."""
        target = str(self.mnt)
        with open("/proc/self/mounts") as mounts:
            return any(line.split(" ")[1] == target for line in mounts)

    def _detach(self, *, lazy: bool) -> None:
        if self.mounted() and not lazy:
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False, capture_output=True)
        if self.mounted():  # lazy, or still busy (a test failed with files open)
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        deadline = time.monotonic() + 10
        while self.mounted():
            assert time.monotonic() < deadline, f"{self.mnt} is still mounted"
            time.sleep(0.02)


# --- the journal and the queue file ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged write: ``kind`` E (enqueue), C (complete), F (fail), R (retry)."""

    kind: str
    job_id: int
    n: int
    attempts: int = 0


def read_journal(directory: Path) -> list[Ack]:
    """Every acknowledgement the producers and workers journaled (whole lines only: a line
    is one write, so a process killed mid-line cannot leave half of one)."""
    acks = []
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text().splitlines():
            kind, job_id, n, *rest = line.split(" ")
            assert kind in "ECFR", line
            acks.append(Ack(kind, int(job_id), int(n), int(rest[0]) if rest else 0))
    return acks


@dataclass(frozen=True, slots=True)
class Row:
    status: str
    n: int
    attempts: int


def read_rows(db: Path) -> dict[int, Row]:
    """The queue file's jobs, after ``PRAGMA integrity_check`` says the file is sound."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchall()
        assert check == [("ok",)], f"{db} is corrupt after a power cut: {check}"
        rows = conn.execute("SELECT id, status, payload, attempts FROM usvc_jobs").fetchall()
    finally:
        conn.close()
    return {
        rid: Row(status, json.loads(payload)["n"], attempts)
        for rid, status, payload, attempts in rows
    }


def _kept(ack: Ack, row: Row | None) -> bool:
    """Whether the queue file still shows what ``ack`` acknowledged."""
    if row is None or row.n != ack.n:
        return False
    if ack.kind == "C":
        return row.status == "Completed"
    if ack.kind == "F":
        return row.status == "Failed"
    if ack.kind == "R":
        # Back in Processing at the same attempt is the one state the retry left behind.
        return not (row.status == "Processing" and row.attempts == ack.attempts)
    return True  # E: the job exists


@dataclass
class Audit:
    """The acknowledgements checked against the file after each cut, and those it lost."""

    checks: int = 0  #: acknowledgement checks, summed over every audit
    lost: dict[Ack, int] = field(default_factory=dict)  #: each lost ack, at its first audit

    def lost_of(self, kinds: str) -> int:
        return sum(1 for ack in self.lost if ack.kind in kinds)


def audit(result: Audit, acks: Iterable[Ack], rows: dict[int, Row], cut: int) -> list[Ack]:
    """Check every acknowledgement against ``rows``; returns the ones lost at this audit."""
    new_losses = []
    for ack in acks:
        result.checks += 1
        if ack in result.lost or _kept(ack, rows.get(ack.job_id)):
            continue
        result.lost[ack] = cut
        new_losses.append(ack)
    return new_losses


def kill_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait(30)
