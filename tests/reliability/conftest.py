"""Helpers of the reliability suites: the test service, execution records, sockets."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from usvc_core import EnqueueRequest
from usvc_sqlite import SqliteQueue
from usvc_sqlite.schema import TABLE

from tests.conftest import ServiceProcess, free_port

SERVICE_MAIN = Path(__file__).resolve().parent / "service" / "main.py"
MICROSERVICE = "reliability"


class ReliabilityService(ServiceProcess):
    """The test service, run as ``python main.py`` from ``workdir``; its log stays there too
    (the kill suite starts dozens of processes: their logs are the evidence of a failure)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = int(env.get("HTTP_PORT") or free_port())
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MICROSERVICE", "QUEUE_", "DEV_", "HTTP_", "ORACLE_", "MONGODB_"))
            and not k.startswith(("OTEL_", "LEASE_", "RELIABILITY_", "LOG_", "JOB_", "MAX_"))
        }
        full_env.update(
            {
                "MICROSERVICE_NAME": MICROSERVICE,
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(self.port),
                **env,
            }
        )
        self.log_path = workdir / f"service-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVICE_MAIN)],
            cwd=workdir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://{full_env['HTTP_HOST']}:{self.port}"


def start_service(workdir: Path, env: dict[str, str]) -> ReliabilityService:
    """Start the test service with ``workdir`` as working directory (its log goes there)."""
    return ReliabilityService(workdir, env)


@pytest.fixture
def reliability_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start test services in this test's temporary directory; kill leftovers at the end."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str], workdir: Path | None = None) -> ServiceProcess:
        proc = start_service(workdir or tmp_path, env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@dataclass(frozen=True, slots=True)
class Execution:
    """One line of the record file: a handler started (S) or returned (E)."""

    mark: str
    job_id: str
    pid: int
    at: float


def read_executions(path: Path) -> list[Execution]:
    """Every line the handlers appended; a torn line would be a bug, so none is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        mark, job_id, pid, at = line.split(" ")
        assert mark in ("S", "E"), line
        out.append(Execution(mark, job_id, int(pid), float(at)))
    return out


def listening_ipv4(port: int) -> set[str]:
    """Local IPv4 addresses with a socket in LISTEN state on ``port`` (from /proc/net/tcp)."""
    found: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        addr_hex, port_hex = local.split(":")
        if state != "0A" or int(port_hex, 16) != port:  # 0A = TCP_LISTEN
            continue
        # The kernel prints the address as a host-order (little-endian here) 32-bit word.
        found.add(str(ipaddress.IPv4Address(bytes.fromhex(addr_hex)[::-1])))
    return found


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine outside 127.0.0.0/8, if it has one."""
    candidates: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks a route
            candidates.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        candidates.extend(str(info[4][0]) for info in infos)
    except OSError:
        pass
    for addr in candidates:
        ip = ipaddress.IPv4Address(addr)
        if not ip.is_loopback and not ip.is_unspecified:
            return addr
    return None


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


class JobsDb:
    """The SQLite queue file seen from outside, as an operator would inspect it.

    Producers go through :class:`~usvc_sqlite.SqliteQueue`; this reads rows directly
    (``lease_owner`` is the worker id ``host:pid:suffix``), and writes the rows a badly
    behaved producer might write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"  # an absolute path: four slashes in all

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def create(self) -> None:
        """Create the schema as the queue does (so raw rows can be written first)."""

        async def run() -> None:
            queue = SqliteQueue(self.path)
            await queue.open()
            await queue.close()

        asyncio.run(run())

    def enqueue(self, payloads: Sequence[dict[str, Any]], *, max_attempts: int = 3) -> list[str]:
        """Enqueue through the real queue, as a producer process would."""

        async def run() -> list[str]:
            queue = SqliteQueue(self.path)
            await queue.open()
            try:
                ids: list[str] = []
                for start in range(0, len(payloads), 500):
                    jobs = await queue.enqueue_many(
                        [
                            EnqueueRequest(p, MICROSERVICE, max_attempts=max_attempts)
                            for p in payloads[start : start + 500]
                        ]
                    )
                    ids.extend(j.id for j in jobs)
                return ids
            finally:
                await queue.close()

        return asyncio.run(run())

    def insert_raw(self, payload: str | bytes | int | float | None, action: str = "") -> str:
        """A row written by a producer that does not use the kit (any payload value)."""
        with contextlib.closing(self._connect()) as conn:
            cur = conn.execute(
                f"INSERT INTO {TABLE} (microservice, action, payload) VALUES (?, ?, ?)",
                (MICROSERVICE, action, payload),
            )
            return str(cur.lastrowid)

    def rows(self, ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """``id -> {status, attempts, error_code, error_message, lease_owner}``."""
        with contextlib.closing(self._connect()) as conn:
            cur = conn.execute(
                f"SELECT id, status, attempts, error_code, error_message, lease_owner, results "
                f"FROM {TABLE} WHERE microservice = ?",
                (MICROSERVICE,),
            )
            out = {
                str(r[0]): {
                    "status": r[1],
                    "attempts": r[2],
                    "error_code": r[3],
                    "error_message": r[4],
                    "lease_owner": r[5],
                    "results": r[6],
                }
                for r in cur.fetchall()
            }
        if ids is None:
            return out
        return {i: out[i] for i in ids}

    def counts(self) -> Counter[str]:
        with contextlib.closing(self._connect()) as conn:
            return Counter(
                dict(
                    conn.execute(
                        f"SELECT status, count(*) FROM {TABLE} WHERE microservice = ? "
                        "GROUP BY status",
                        (MICROSERVICE,),
                    ).fetchall()
                )
            )

    def owned_by(self, pid: int) -> dict[str, str]:
        """Unfinished jobs whose lease belongs to the worker process ``pid``: id -> status."""
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT id, status FROM {TABLE} WHERE status IN ('Assigned', 'Processing') "
                "AND lease_owner LIKE ?",
                (f"%:{pid}:%",),
            ).fetchall()
        return {str(r[0]): r[1] for r in rows}

    def unfinished(self) -> int:
        c = self.counts()
        return c["Ready"] + c["Assigned"] + c["Processing"]
