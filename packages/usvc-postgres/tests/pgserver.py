"""A real PostgreSQL server (and PgBouncer) for tests: initdb into a temporary directory,
started on a free port with its socket in that directory, stopped by PID.

Shared by packages/usvc-postgres/tests and tests/postgres (both conftests put this
directory on ``sys.path``). One server per test session serves every test that does not
break it (each test uses its own service names); the fault tests start their own.

Durable as production should be: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` stay on (PostgreSQL's defaults).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "PgBouncer",
    "PgServer",
    "free_port",
    "postgres_bin_dir",
    "shared_server",
    "skip_reason",
]

_SEARCH = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def postgres_bin_dir() -> Path | None:
    """Where ``postgres``, ``initdb`` and ``pg_ctl`` are (``USVC_PG_BIN`` first), or None."""
    candidates = [os.environ.get("USVC_PG_BIN", ""), *_SEARCH]
    for found in candidates:
        if found and (Path(found) / "postgres").is_file() and (Path(found) / "initdb").is_file():
            return Path(found)
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def skip_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    if postgres_bin_dir() is None:
        return (
            "no PostgreSQL server binary (postgres, initdb) found in /usr/lib/postgresql/*/bin "
            "or on PATH: run `bash scripts/install-postgres.sh` (Debian postgresql-15)"
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: run its programs as the ``postgres`` user then
    (``subprocess`` options)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _chown_for_server(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


class PgServer:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:``port``."""

    user = "postgres"
    database = "postgres"

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        bindir = postgres_bin_dir()
        if bindir is None:
            raise RuntimeError(skip_reason())
        self.bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="usvc-pg-"))
        self.root.chmod(0o755)
        _chown_for_server(self.root)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] '",
            **(settings or {}),
        }

    # --- lifecycle ---------------------------------------------------------------------------

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, check=True, capture_output=True, text=True, timeout=120, cwd=self.root,
            **_server_user(),
        )  # fmt: skip

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # the cluster is new and empty; fsync stays on for what runs in it
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\n")
            for name, value in self.settings.items():
                conf.write(f"{name} = {value}\n")

    def start(self, timeout: float = 60.0) -> None:
        """Start the postmaster as a child of this process (so that this process reaps it
        when it dies, whatever signal killed it) and wait until it accepts connections."""
        if self._proc is not None and self._proc.poll() is None:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
                start_new_session=True,  # a ^C in the test run does not reach it
                **_server_user(),
            )
        deadline = time.monotonic() + timeout
        while not self.accepts_connections():
            if self._proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def accepts_connections(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.user, "-d", self.database],
            check=False, capture_output=True, timeout=30,
        )  # fmt: skip
        return result.returncode == 0

    @property
    def pid(self) -> int | None:
        """The postmaster's PID, or None when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    def _signal_and_wait(self, signum: int, timeout: float) -> bool:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return True
        children = _children(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        # Backends notice the postmaster's death and exit; wait for them, so that a new
        # start finds no shared memory still in use.
        return _wait_gone(children, timeout)

    def restart(self) -> None:
        """What ``pg_ctl restart -m immediate`` does: SIGQUIT (every session aborted, no
        checkpoint; crash recovery at the next start), then start again."""
        self._signal_and_wait(signal.SIGQUIT, 60)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster (and wait until its backends are gone too)."""
        self._signal_and_wait(signal.SIGKILL, 30)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID; SIGKILL if it lingers."""
        if not self._signal_and_wait(signal.SIGINT, 30):
            self.kill()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # --- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """A ``postgresql://`` URL for TCP on 127.0.0.1."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent PID is the 2nd field after the ")" that closes the command name.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class PgBouncer:
    """Debian's pgbouncer in front of ``server``, on a free port, in ``pool_mode``.

    No ``max_prepared_statements`` (1.21+; Debian 12 ships 1.18): in transaction pooling a
    client must not rely on prepared statements, nor on LISTEN, nor on any session state.
    """

    def __init__(self, server: PgServer, *, pool_mode: str = "transaction") -> None:
        self.server = server
        self.root = Path(tempfile.mkdtemp(prefix="usvc-pgbouncer-"))
        self.root.chmod(0o755)
        _chown_for_server(self.root)
        self.port = free_port()
        self.ini = self.root / "pgbouncer.ini"
        self._proc: subprocess.Popen[bytes] | None = None
        self.logfile = self.root / "pgbouncer.log"
        (self.root / "users.txt").write_text(f'"{server.user}" ""\n')
        self.ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.root}\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\n"
            f"pool_mode = {pool_mode}\n"
            "default_pool_size = 10\n"
            "max_client_conn = 500\n"
            f"logfile = {self.logfile}\n"
            "ignore_startup_parameters = extra_float_digits,options,application_name,"
            "statement_timeout,idle_in_transaction_session_timeout\n"
        )
        for path in (self.ini, self.root / "users.txt"):
            _chown_for_server(path)

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["pgbouncer", str(self.ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **_server_user(),
        )
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no pgbouncer log)"

    @property
    def url(self) -> str:
        return f"postgresql://{self.server.user}@127.0.0.1:{self.port}/{self.server.database}"


_SHARED: PgServer | None = None


@contextlib.contextmanager
def shared_server() -> Iterator[PgServer]:
    """The session's server, started on first use; stopped when the outermost user ends.

    Both conftests' session fixtures go through here, so that a session running the package
    tests and tests/postgres together starts one server, not two."""
    global _SHARED
    owner = _SHARED is None
    if _SHARED is None:
        server = PgServer()
        try:
            server.init()
            server.start()
        except BaseException:
            server.remove()
            raise
        _SHARED = server
    try:
        yield _SHARED
    finally:
        if owner:
            _SHARED.remove()
            _SHARED = None
