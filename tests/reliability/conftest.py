"""Helpers of the reliability suites: the test service, execution records, sockets."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ServiceProcess

SERVICE_MAIN = Path(__file__).resolve().parent / "service" / "main.py"
MICROSERVICE = "reliability"


def start_service(workdir: Path, env: dict[str, str]) -> ServiceProcess:
    """Start the test service with ``workdir`` as working directory (its log goes there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return ServiceProcess(workdir, {"MICROSERVICE_NAME": MICROSERVICE, **env}, str(SERVICE_MAIN))


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
