"""A recording fake of the python-oracledb async pool/connection/cursor, for unit tests.

The fake knows the queue's statements by name (it refuses any other SQL text, so every text
the adapter sends is one of the ``Statements`` the sqlglot tests check) and applies each
one's meaning to rows in memory, with per-connection transactions, row locks that
``FOR UPDATE SKIP LOCKED`` skips, and the driver's fetch buffering (``prefetchrows`` rows come
back with execute, then ``arraysize`` rows per fetch round trip; every fetched row is locked).
Faults can be injected before or after any call. It models the SQL, it is not Oracle: only a
run against a real database checks the texts themselves.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import oracledb
from oracledb import errors as ora_errors
from usvc_oracle import Statements, TableName
from usvc_oracle.sql import (
    CLAIM_COLUMNS,
    CLAIM_STARTED_COLUMNS,
    IN_LIST_SIZE,
    JOB_COLUMNS,
    in_list_binds,
)

READY, ASSIGNED, PROCESSING, COMPLETED, FAILED = (
    "Ready",
    "Assigned",
    "Processing",
    "Completed",
    "Failed",
)
UNFINISHED = (READY, ASSIGNED, PROCESSING)


def ora_error(message: str, code: int = 0) -> oracledb.Error:
    """An exception exactly as the driver builds it (ORA codes for lost sessions become
    DPY-4011)."""
    err = ora_errors._Error(message, code=code)
    exc: oracledb.Error = err.exc_type(err)
    return exc


def connection_lost() -> oracledb.Error:
    """What thin mode raises when the server or network drops the session mid-call."""
    return ora_error("ORA-03113: end-of-file on communication channel", code=3113)


class FakeLob:
    """What a CLOB column fetches as when no output type handler turns it into text."""

    def __init__(self, text: str) -> None:
        self.text = text


class FakeVar:
    def __init__(self, typ: Any, size: int = 0, arraysize: int = 1) -> None:
        self.type = typ
        self.size = size
        self.arraysize = arraysize
        self.values: list[list[Any]] = [[]]

    def getvalue(self, pos: int = 0) -> Any:
        return self.values[pos]


@dataclass
class Fault:
    call: str  #: a statement name, or acquire/commit/rollback/release/drop/ping
    exc: Callable[[], BaseException]
    after: bool = False  #: raise after the call took effect (e.g. a commit that landed)
    times: int = 1
    skip: int = 0  #: let this many matching calls pass first


@dataclass
class FakeDatabase:
    """The server side: committed rows, row locks, the clock, faults and the call log."""

    table: TableName = field(default_factory=lambda: TableName.parse("MICRO_SVC"))
    now: datetime = datetime(2026, 1, 1, 12, 0, 0)  # naive UTC, like TIMESTAMP columns
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    locks: dict[int, int] = field(default_factory=dict)  # row id -> connection id
    log: list[tuple[Any, ...]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    missing_table: bool = False
    ids: Any = field(default_factory=lambda: itertools.count(1))
    conn_ids: Any = field(default_factory=lambda: itertools.count(1))
    connections: list[FakeConnection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = {sql: name for name, sql in Statements.render(self.table).as_dict().items()}

    # --- test helpers ------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def fail(self, call: str, exc: Callable[[], BaseException], **kw: Any) -> None:
        self.faults.append(Fault(call, exc, **kw))

    def calls(self, *kinds: str, conn: int | None = None) -> list[tuple[Any, ...]]:
        """The log without the connection ids, optionally only some kinds of call."""
        return [
            (e[0], *e[2:])
            for e in self.log
            if (not kinds or e[0] in kinds) and (conn is None or e[1] == conn)
        ]

    def status(self, job_id: str) -> str:
        return str(self.rows[int(job_id)]["STATUS"])

    def add(self, microservice: str = "svc", **values: Any) -> int:
        """Insert a committed row directly (as another producer would)."""
        row_id = next(self.ids)
        row = dict.fromkeys(JOB_COLUMNS)
        row.update(
            ID=row_id,
            MICROSERVICE=microservice,
            STATUS=READY,
            PRIORITY=0,
            ATTEMPTS=0,
            MAX_ATTEMPTS=3,
            RUN_AT=self.now,
            CREATED_AT=self.now,
            UPDATED_AT=self.now,
            TOKEN=str(row_id),
        )
        row.update(values)
        self.rows[row_id] = row
        return row_id

    # --- fault injection ----------------------------------------------------------------------

    def _fault(self, call: str, after: bool) -> None:
        for fault in self.faults:
            if fault.call == call and fault.after == after and fault.times > 0:
                if fault.skip:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                raise fault.exc()


class FakePool:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.closed = False

    async def acquire(self) -> FakeConnection:
        self.db._fault("acquire", after=False)
        conn = FakeConnection(self.db)
        self.db.connections.append(conn)
        self.db.log.append(("acquire", conn.id))
        return conn

    async def release(self, connection: FakeConnection) -> None:
        self.db.log.append(("release", connection.id))
        assert not connection.pending, "released with an open transaction"
        connection.released = True

    async def drop(self, connection: FakeConnection) -> None:
        self.db.log.append(("drop", connection.id))
        connection._end()  # the server rolls back a closed session
        connection.dead = True

    async def close(self, force: bool = False) -> None:
        self.closed = True
        self.db.log.append(("close_pool", 0))


class FakeConnection:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.id = next(db.conn_ids)
        self.pending: dict[int, dict[str, Any] | None] = {}  # None: deleted
        self.call_timeout = 0
        self.dead = False
        self.released = False

    @property
    def transaction_in_progress(self) -> bool:
        return bool(self.pending) or any(c == self.id for c in self.db.locks.values())

    def _check(self) -> None:
        if self.dead:
            raise ora_errors._create_exception(ora_errors.ERR_NOT_CONNECTED)
        assert not self.released, "used after release"

    def _call(self, name: str, action: Callable[[], None]) -> None:
        self._check()
        try:
            self.db._fault(name, after=False)
        except oracledb.Error as exc:
            if exc.args[0].is_session_dead:
                self._end()
                self.dead = True
            raise
        action()
        try:
            self.db._fault(name, after=True)
        except oracledb.Error as exc:
            if exc.args[0].is_session_dead:
                self._end()
                self.dead = True
            raise

    def _end(self) -> None:
        self.pending.clear()
        for row_id in [r for r, c in self.db.locks.items() if c == self.id]:
            del self.db.locks[row_id]

    def cursor(self) -> FakeCursor:
        self._check()
        return FakeCursor(self)

    async def commit(self) -> None:
        def apply() -> None:
            for row_id, row in self.pending.items():
                if row is None:
                    self.db.rows.pop(row_id, None)
                else:
                    self.db.rows[row_id] = row
            self._end()

        self.db.log.append(("commit", self.id))
        self._call("commit", apply)

    async def rollback(self) -> None:
        self.db.log.append(("rollback", self.id))
        self._call("rollback", self._end)

    async def ping(self) -> None:
        self.db.log.append(("ping", self.id))
        self._call("ping", lambda: None)

    # --- rows as this session sees them ----------------------------------------------------------

    def view(self) -> dict[int, dict[str, Any]]:
        merged = dict(self.db.rows)
        merged.update(self.pending)
        return {k: v for k, v in merged.items() if v is not None}

    def write(self, row_id: int) -> dict[str, Any]:
        """This session's copy of a row, locked for it."""
        holder = self.db.locks.get(row_id)
        assert holder in (None, self.id), "the fake would block here (row locked elsewhere)"
        self.db.locks[row_id] = self.id
        if self.pending.get(row_id) is None:
            self.pending[row_id] = copy.deepcopy(self.db.rows[row_id])
        row = self.pending[row_id]
        assert row is not None
        return row


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.db = conn.db
        self.prefetchrows = 2  # the driver's defaults
        self.arraysize = 100
        self.outputtypehandler: Any = None
        self.rowcount = 0
        self.input_sizes: dict[str, Any] = {}
        self._buffer: list[tuple[Any, ...]] = []
        self._pending_rows: list[tuple[Any, ...]] = []
        self._lock_on_fetch = False
        self._dml_counts: list[int] = []
        self.closed = False

    # --- the API ---------------------------------------------------------------------------

    def var(self, typ: Any, size: int = 0, arraysize: int = 1) -> FakeVar:
        return FakeVar(typ, size, arraysize)

    def setinputsizes(self, *args: Any, **kwargs: Any) -> None:
        self.input_sizes.update(kwargs)

    def close(self) -> None:
        self.closed = True

    def getarraydmlrowcounts(self) -> list[int]:
        return list(self._dml_counts)

    def _name(self, statement: str) -> str:
        name = self.db.names.get(statement)
        assert name is not None, f"SQL not from Statements:\n{statement}"
        return name

    async def execute(self, statement: str, parameters: Any = None) -> None:
        name = self._name(statement)
        params = dict(parameters or {})
        self.db.log.append(("execute", self.conn.id, name, self.prefetchrows, self.arraysize))
        self.conn._call(name, lambda: self._run(name, params, 0))

    async def executemany(
        self, statement: str, parameters: Any, *, arraydmlrowcounts: bool = False
    ) -> None:
        name = self._name(statement)
        self.db.log.append(("executemany", self.conn.id, name, len(parameters)))

        def run_all() -> None:
            counts = []
            for i, row in enumerate(parameters):
                self._run(name, dict(row), i)
                counts.append(self.rowcount)
            self._dml_counts = counts
            self.rowcount = sum(counts)

        self.conn._call(name, run_all)

    async def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        want = self.arraysize if size is None else size
        self.db.log.append(("fetchmany", self.conn.id, want))
        out: list[tuple[Any, ...]] = []
        while len(out) < want:
            if not self._buffer:
                if not self._pending_rows:
                    break
                self._server_fetch(self.arraysize)  # one more round trip
                continue
            out.append(self._buffer.pop(0))
        return out

    async def fetchall(self) -> list[tuple[Any, ...]]:
        self.db.log.append(("fetchall", self.conn.id))
        out: list[tuple[Any, ...]] = []
        while True:
            out.extend(self._buffer)
            self._buffer.clear()
            if not self._pending_rows:
                return out
            self._server_fetch(self.arraysize)

    # --- the server side of a query ---------------------------------------------------------------

    def _query(self, rows: list[tuple[Any, ...]], lock: bool = False) -> None:
        """Results come back in round trips; SKIP LOCKED locks each row as it is fetched."""
        self._pending_rows = rows
        self._lock_on_fetch = lock
        self._buffer = []
        self._server_fetch(self.prefetchrows)

    def _server_fetch(self, n: int) -> None:
        taken = 0
        while self._pending_rows and taken < n:
            row = self._pending_rows.pop(0)
            if self._lock_on_fetch:
                holder = self.db.locks.get(row[0])
                if holder not in (None, self.conn.id):
                    continue  # SKIP LOCKED
                self.db.locks[row[0]] = self.conn.id
            self._buffer.append(row)
            taken += 1

    def _out(self, params: dict[str, Any], name: str) -> FakeVar:
        var = params.get(name, self.input_sizes.get(name))
        assert isinstance(var, FakeVar), f"no out variable {name}"
        return var

    def _returning(
        self, params: dict[str, Any], i: int, rows: list[dict[str, Any]], columns: list[str]
    ) -> None:
        for column in columns:
            var = self._out(params, f"o_{column.lower()}")
            while len(var.values) <= i:
                var.values.append([])
            var.values[i] = [self._value(r[column], var) for r in rows]

    def _value(self, value: Any, var: FakeVar | None = None) -> Any:
        if isinstance(value, str) and var is not None and var.type is str:
            assert len(value) <= (var.size or 4000), "DPY-4002: value too large for variable"
        return value

    def _ids(self, params: dict[str, Any]) -> list[int]:
        names = in_list_binds()
        assert all(self.input_sizes.get(n) is oracledb.DB_TYPE_NUMBER for n in names)
        ids = [params[n] for n in names]
        assert len(ids) == IN_LIST_SIZE
        return [i for i in ids if i is not None]

    def _run(self, name: str, p: dict[str, Any], i: int) -> None:
        db, conn, now = self.db, self.conn, self.db.now
        view = conn.view()
        if db.missing_table:
            raise ora_error("ORA-00942: table or view does not exist", code=942)
        self.rowcount = 0

        def owned(expected: tuple[str, ...]) -> dict[str, Any] | None:
            row = view.get(p["id"])
            if row is None or row["LEASE_TOKEN"] != p["lease_token"]:
                return None
            if row["STATUS"] not in expected:
                return None
            self.rowcount = 1
            return conn.write(p["id"])

        if name == "probe":
            self._query([])
        elif name == "enqueue":
            key = p["idempotency_key"]
            if key is not None and any(
                r["MICROSERVICE"] == p["microservice"]
                and r["IDEMPOTENCY_KEY"] == key
                and r["STATUS"] in UNFINISHED
                for r in view.values()
            ):
                raise ora_error(
                    f'ORA-00001: unique constraint ("{db.table.table}_IDEM_UX") violated', code=1
                )
            row_id = next(db.ids)
            row = dict.fromkeys(JOB_COLUMNS)
            row.update(
                ID=row_id,
                MICROSERVICE=p["microservice"],
                ACTION=p["action"],
                STATUS=READY,
                PRIORITY=p["priority"],
                PAYLOAD=p["payload"],
                TOKEN=p["token"],
                IDEMPOTENCY_KEY=key,
                ATTEMPTS=0,
                MAX_ATTEMPTS=p["max_attempts"],
                RUN_AT=now + timedelta(seconds=p["delay_seconds"]),
                CREATED_AT=now,
                UPDATED_AT=now,
            )
            conn.pending[row_id] = row
            db.locks[row_id] = conn.id
            self.rowcount = 1
            self._returning(p, i, [row], ["ID", "RUN_AT", "CREATED_AT", "UPDATED_AT"])
        elif name == "set_default_token":
            row = view.get(p["id"])
            if row is not None and row["TOKEN"] is None:
                conn.write(p["id"])["TOKEN"] = str(p["id"])
                self.rowcount = 1
        elif name == "idempotency_holder":
            self._query(
                [
                    (r["ID"],)
                    for r in view.values()
                    if r["MICROSERVICE"] == p["microservice"]
                    and r["IDEMPOTENCY_KEY"] == p["idempotency_key"]
                    and r["STATUS"] in UNFINISHED
                ]
            )
        elif name == "claim_lock":
            due = [
                r
                for r in view.values()
                if r["STATUS"] == READY
                and r["MICROSERVICE"] == p["microservice"]
                and r["RUN_AT"] <= now
            ]
            due.sort(key=lambda r: (-r["PRIORITY"], r["RUN_AT"], r["ID"]))
            self._query([(r["ID"],) for r in due], lock=True)
        elif name in ("claim_update", "claim_start_update"):
            start = name == "claim_start_update"
            claimed = []
            for row_id in self._ids(p):
                if view.get(row_id, {}).get("STATUS") != READY:
                    continue
                row = conn.write(row_id)
                row.update(
                    STATUS=PROCESSING if start else ASSIGNED,
                    ATTEMPTS=row["ATTEMPTS"] + 1 if start else row["ATTEMPTS"],
                    LEASE_OWNER=p["worker_id"],
                    LEASE_TOKEN=p["lease_token"] + str(row_id),
                    ASSIGNED_AT=now,
                    STARTED_AT=now if start else None,
                    LEASE_EXPIRES_AT=now + timedelta(seconds=p["lease_seconds"]),
                    UPDATED_AT=now,
                )
                claimed.append(row)
            self.rowcount = len(claimed)
            columns = CLAIM_STARTED_COLUMNS if start else CLAIM_COLUMNS
            self._returning(p, i, claimed, list(columns))
        elif name == "mark_processing":
            row = owned((ASSIGNED,))
            if row is not None:
                row.update(
                    STATUS=PROCESSING,
                    ATTEMPTS=row["ATTEMPTS"] + 1,
                    STARTED_AT=now,
                    LEASE_EXPIRES_AT=now + timedelta(seconds=p["lease_seconds"]),
                    UPDATED_AT=now,
                )
            self._returning(
                p,
                i,
                [row] if row else [],
                ["ATTEMPTS", "STARTED_AT", "LEASE_EXPIRES_AT", "UPDATED_AT"],
            )
        elif name == "extend_lease":
            row = owned((ASSIGNED, PROCESSING))
            if row is not None:
                row.update(
                    LEASE_EXPIRES_AT=now + timedelta(seconds=p["lease_seconds"]), UPDATED_AT=now
                )
        elif name in ("complete", "fail"):
            row = owned((PROCESSING,))
            if row is not None:
                row.update(
                    STATUS=COMPLETED if name == "complete" else FAILED,
                    RESULTS=p.get("results"),
                    ERROR_CODE=p.get("error_code"),
                    ERROR_MESSAGE=p.get("error_message") or None,
                    RUNTIME_MS=p["runtime_ms"],
                    FINISHED_AT=now,
                    LEASE_EXPIRES_AT=None,
                    UPDATED_AT=now,
                )
        elif name == "retry":
            row = owned((PROCESSING,))
            if row is not None:
                again = row["ATTEMPTS"] < row["MAX_ATTEMPTS"]
                row.update(
                    STATUS=READY if again else FAILED,
                    RUN_AT=now + timedelta(seconds=p["delay_seconds"]) if again else row["RUN_AT"],
                    FINISHED_AT=None if again else now,
                    LEASE_OWNER=None if again else row["LEASE_OWNER"],
                    LEASE_TOKEN=None if again else row["LEASE_TOKEN"],
                    ERROR_CODE=p["error_code"],
                    ERROR_MESSAGE=p["error_message"] or None,
                    RUNTIME_MS=p["runtime_ms"],
                    LEASE_EXPIRES_AT=None,
                    UPDATED_AT=now,
                )
            self._returning(p, i, [row] if row else [], ["STATUS"])
        elif name == "release":
            row = owned((ASSIGNED, PROCESSING))
            if row is not None:
                if row["STATUS"] == PROCESSING and row["ATTEMPTS"] > 0:
                    row["ATTEMPTS"] -= 1
                row.update(
                    STATUS=READY,
                    LEASE_OWNER=None,
                    LEASE_TOKEN=None,
                    ASSIGNED_AT=None,
                    STARTED_AT=None,
                    LEASE_EXPIRES_AT=None,
                    UPDATED_AT=now,
                )
        elif name == "job_state":
            row = view.get(p["id"])
            self._query([] if row is None else [(row["STATUS"], row["LEASE_TOKEN"])])
        elif name == "get":
            row = view.get(p["id"])
            if row is None:
                self._query([])
            else:
                clob = ("PAYLOAD", "RESULTS", "ERROR_MESSAGE")
                values = tuple(
                    FakeLob(row[c])
                    if c in clob and row[c] is not None and self.outputtypehandler is None
                    else row[c]
                    for c in JOB_COLUMNS
                )
                self._query([values])
        elif name == "reclaim_lock":
            expired = [
                r
                for r in view.values()
                if r["STATUS"] in (ASSIGNED, PROCESSING)
                and r["MICROSERVICE"] == p["microservice"]
                and r["LEASE_EXPIRES_AT"] < now
            ]
            self._query([(r["ID"],) for r in expired], lock=True)
        elif name == "reclaim_assigned":
            back = []
            for row_id in self._ids(p):
                r = view.get(row_id)
                if r and r["STATUS"] == ASSIGNED and r["LEASE_EXPIRES_AT"] < now:
                    row = conn.write(row_id)
                    row.update(
                        STATUS=READY,
                        LEASE_OWNER=None,
                        LEASE_TOKEN=None,
                        ASSIGNED_AT=None,
                        LEASE_EXPIRES_AT=None,
                        UPDATED_AT=now,
                    )
                    back.append(row)
            self.rowcount = len(back)
            self._returning(p, i, back, ["ID"])
        elif name == "reclaim_processing":
            done = []
            for row_id in self._ids(p):
                r = view.get(row_id)
                if r and r["STATUS"] == PROCESSING and r["LEASE_EXPIRES_AT"] < now:
                    row = conn.write(row_id)
                    again = row["ATTEMPTS"] < row["MAX_ATTEMPTS"]
                    row.update(
                        STATUS=READY if again else FAILED,
                        FINISHED_AT=None if again else now,
                        LEASE_OWNER=None if again else row["LEASE_OWNER"],
                        LEASE_TOKEN=None if again else row["LEASE_TOKEN"],
                        ERROR_CODE=p["error_code"],
                        ERROR_MESSAGE=p["requeued_message"] if again else p["failed_message"],
                        LEASE_EXPIRES_AT=None,
                        UPDATED_AT=now,
                    )
                    done.append(row)
            self.rowcount = len(done)
            self._returning(p, i, done, ["ID", "STATUS"])
        elif name == "stats":
            groups: dict[str, list[dict[str, Any]]] = {}
            for r in view.values():
                if r["MICROSERVICE"] == p["microservice"]:
                    groups.setdefault(r["STATUS"], []).append(r)
            ready = groups.pop(READY, [])
            out = [
                (
                    READY,
                    len(ready),
                    min((r["CREATED_AT"] for r in ready), default=None),
                    now if ready else None,
                )
            ]
            out += [(s, len(rs), None, None) for s, rs in groups.items()]
            self._query(out)
        elif name == "purge":
            cutoff = now - timedelta(seconds=p["older_than_seconds"])
            doomed = [
                r["ID"]
                for r in view.values()
                if r["MICROSERVICE"] == p["microservice"]
                and r["STATUS"] in (COMPLETED, FAILED)
                and r["FINISHED_AT"] < cutoff
            ][: p["batch_size"]]
            for row_id in doomed:
                conn.write(row_id)
                conn.pending[row_id] = None  # deleted when committed
            self.rowcount = len(doomed)
        else:  # pragma: no cover - every name above
            raise AssertionError(name)


def utc(value: datetime) -> datetime:
    """A fake DB timestamp as the queue reports it."""
    return value.replace(tzinfo=UTC)
