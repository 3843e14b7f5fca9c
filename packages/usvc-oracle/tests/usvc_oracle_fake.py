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
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import oracledb
from oracledb import errors as ora_errors
from usvc_oracle import Statements, TableName
from usvc_oracle.sql import (
    ATTEMPT_COLUMNS,
    CLAIM_COLUMNS,
    CLAIM_STARTED_COLUMNS,
    IN_LIST_SIZE,
    JOB_COLUMNS,
    STATUS_LIST_SIZE,
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
#: The server's string limit as the thin driver reads it from the server's runtime
#: capabilities: 4 000 bytes with MAX_STRING_SIZE=STANDARD (19c's default), 32 767 with
#: EXTENDED. A longer str bind is sent as LONG.
STANDARD_MAX_STRING_SIZE = 4_000
EXTENDED_MAX_STRING_SIZE = 32_767
#: A bind placeholder in a statement's text (no statement has a colon inside a literal).
_BIND = re.compile(r"(?<![\w:]):([a-z_][a-z0-9_]*)")
#: The schema the fake's user owns (constraint names are reported qualified by it).
SCHEMA = "USVC"


def ora_error(message: str, code: int = 0) -> oracledb.Error:
    """An exception exactly as the driver builds it (ORA codes for lost sessions become
    DPY-4011)."""
    err = ora_errors._Error(message, code=code)
    exc: oracledb.Error = err.exc_type(err)
    return exc


def unique_violation(name: str) -> oracledb.Error:
    """ORA-00001 as Oracle words it, naming the constraint or unique index."""
    return ora_error(f"ORA-00001: unique constraint ({SCHEMA}.{name}) violated", code=1)


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
    #: (statement name, the cursor's setinputsizes) of every execute/executemany
    input_sizes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    missing_table: bool = False
    #: the server's MAX_STRING_SIZE as the driver sees it (see STANDARD_MAX_STRING_SIZE)
    max_string_size: int = STANDARD_MAX_STRING_SIZE
    missing_limits_table: bool = False
    #: a table from before the attempt history (no <table>_ATTEMPTS)
    missing_attempts_table: bool = False
    #: committed rows of the LIMITS table: (microservice, action)
    limits: set[tuple[str, str]] = field(default_factory=set)
    #: the fleet's tables (committed at once: the queue writes them in one autocommitted
    #: statement each): (microservice, worker id) -> row; (microservice, action) -> paused at
    workers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    paused: dict[tuple[str, str], datetime] = field(default_factory=dict)
    #: revoked admin sessions: id -> until
    sessions: dict[str, datetime] = field(default_factory=dict)
    #: committed rows of the ATTEMPTS table: (job id, slot) -> row
    attempts: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
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
        """Insert a committed row directly (as another producer would); an explicit ``ID``
        bypasses the identity sequence, as an INSERT naming the ID does."""
        row_id = values.pop("ID", None) or next(self.ids)
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
            CANCEL_REQUESTED=0,
            ATTEMPT_NO=0,
            START_CONFIRMED=1,
            ATTEMPT_GIVEN_BACK=0,
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
        self.pending_limits: set[tuple[str, str]] = set()
        #: this session's writes to the ATTEMPTS table (None: deleted)
        self.pending_attempts: dict[tuple[int, int], dict[str, Any] | None] = {}
        self.call_timeout = 0
        #: the thin driver sends a commit with each statement while this is set (one
        #: round trip for the statement and its commit)
        self.autocommit = False
        #: V$SESSION.MODULE / ACTION as the session set them (write-only in the driver)
        self.module: str | None = None
        self.action: str | None = None
        self.dead = False
        self.released = False

    @property
    def transaction_in_progress(self) -> bool:
        return (
            bool(self.pending)
            or bool(self.pending_limits)
            or bool(self.pending_attempts)
            or any(c == self.id for c in self.db.locks.values())
        )

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
        self.pending_limits.clear()
        self.pending_attempts.clear()
        for row_id in [r for r, c in self.db.locks.items() if c == self.id]:
            del self.db.locks[row_id]

    def cursor(self) -> FakeCursor:
        self._check()
        return FakeCursor(self)

    def _apply_commit(self) -> None:
        for row_id, row in self.pending.items():
            if row is None:
                self.db.rows.pop(row_id, None)
            else:
                self.db.rows[row_id] = row
        self.db.limits |= self.pending_limits
        for key, attempt in self.pending_attempts.items():
            if attempt is None:
                self.db.attempts.pop(key, None)
            else:
                self.db.attempts[key] = attempt
        self._end()

    async def commit(self) -> None:
        self.db.log.append(("commit", self.id))
        self._call("commit", self._apply_commit)

    def _autocommit(self) -> None:
        """The commit an autocommitting statement carries (faults on "commit" apply)."""
        if self.autocommit:
            self.db.log.append(("autocommit", self.id))
            self._call("commit", self._apply_commit)

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

    def attempts_view(self) -> dict[tuple[int, int], dict[str, Any]]:
        merged = dict(self.db.attempts)
        merged.update(self.pending_attempts)
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
        self._batch_errors: list[Any] = []
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

    def getbatcherrors(self) -> list[Any]:
        return list(self._batch_errors)

    def _check_long_binds(self, statement: str, parameters: Any) -> None:
        """A str bind longer than the server's string limit goes as LONG (the thin driver's
        ``_write_bind_params_row`` compares it with ``max_string_size`` from the server's
        capabilities); Oracle refuses a LONG bind in a statement with RETURNING
        (ORA-22816): such values must be bound as CLOB. (Modelled from the driver's source
        and Oracle's documented restriction; a real database confirms it.)"""
        if "RETURNING" not in statement:
            return
        rows = parameters if isinstance(parameters, list) else [parameters or {}]
        for row in rows:
            for name, value in dict(row).items():
                if (
                    isinstance(value, str)
                    and len(value.encode("utf-8")) > self.db.max_string_size
                    and self.input_sizes.get(name) is not oracledb.DB_TYPE_CLOB
                ):
                    raise ora_error(
                        "ORA-22816: unsupported feature with RETURNING clause", code=22816
                    )

    def _name(self, statement: str) -> str:
        name = self.db.names.get(statement)
        assert name is not None, f"SQL not from Statements:\n{statement}"
        return name

    def _check_bind_names(self, name: str, statement: str, parameters: Any) -> None:
        """The driver binds by name and refuses a name the text lacks (DPY-4008) or a
        placeholder left without a value (DPY-4010); out variables may come from
        setinputsizes."""
        wanted = set(_BIND.findall(statement))
        outs = {k for k, v in self.input_sizes.items() if isinstance(v, FakeVar)}
        rows = parameters if isinstance(parameters, list) else [parameters or {}]
        for row in rows:
            given = set(dict(row)) | outs
            assert given == wanted, (name, sorted(given - wanted), sorted(wanted - given))

    async def execute(self, statement: str, parameters: Any = None) -> None:
        name = self._name(statement)
        params = dict(parameters or {})
        self._check_bind_names(name, statement, params)
        self.db.log.append(("execute", self.conn.id, name, self.prefetchrows, self.arraysize))
        self.db.input_sizes.append((name, dict(self.input_sizes)))
        self._check_long_binds(statement, params)
        self.conn._call(name, lambda: self._run(name, params, 0))
        self.conn._autocommit()

    async def executemany(
        self,
        statement: str,
        parameters: Any,
        *,
        arraydmlrowcounts: bool = False,
        batcherrors: bool = False,
    ) -> None:
        name = self._name(statement)
        self._check_bind_names(name, statement, parameters)
        self.db.log.append(("executemany", self.conn.id, name, len(parameters)))
        self.db.input_sizes.append((name, dict(self.input_sizes)))
        self._check_long_binds(statement, parameters)

        def run_all() -> None:
            counts = []
            self._batch_errors = []
            for i, row in enumerate(parameters):
                try:
                    self._run(name, dict(row), i)
                except oracledb.DatabaseError as exc:
                    if not batcherrors:
                        raise
                    self._batch_errors.append(exc.args[0])
                    self.rowcount = 0
                counts.append(self.rowcount)
            self._dml_counts = counts
            self.rowcount = sum(counts)

        self.conn._call(name, run_all)
        self.conn._autocommit()

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

    @staticmethod
    def _list(params: dict[str, Any], prefix: str, size: int = IN_LIST_SIZE) -> set[Any]:
        """The values of one padded IN list (all its binds must be given)."""
        return {params[n] for n in in_list_binds(prefix, size)} - {None}

    def _filtered(self, view: dict[int, dict[str, Any]], p: dict[str, Any]) -> list[dict]:
        """The rows the admin filter (``_ADMIN_FILTER``) keeps."""
        out = []
        for r in view.values():
            if r["MICROSERVICE"] != p["microservice"]:
                continue
            if p["any_action"] != 1 and r["ACTION"] not in self._list(p, "action"):
                continue
            if p["any_error"] != 1 and r["ERROR_CODE"] not in self._list(p, "error"):
                continue
            if p["created_after"] is not None and r["CREATED_AT"] < p["created_after"]:
                continue
            if p["created_before"] is not None and r["CREATED_AT"] >= p["created_before"]:
                continue
            out.append(r)
        return out

    def _close_attempts(
        self, name: str, p: dict[str, Any], view: dict[int, dict[str, Any]]
    ) -> None:
        """The history MERGEs: copy the current attempt of the rows the statement selects
        into the ring slot MOD(ATTEMPT_NO, :keep) (the row itself is left as it is)."""
        now = self.db.now
        if name == "history_reclaim":
            rows = [
                r
                for i in self._ids(p)
                if (r := view.get(i)) is not None
                and r["STATUS"] == PROCESSING
                and r["LEASE_EXPIRES_AT"] < now
                and (_unstarted(r) or r["ATTEMPTS"] < r["MAX_ATTEMPTS"])
            ]
        elif name == "history_retry_failed":
            r = view.get(p["id"])
            mine = r is not None and r["MICROSERVICE"] == p["microservice"]
            rows = [r] if r is not None and mine and r["STATUS"] == FAILED else []
        else:
            r = view.get(p["id"])
            rows = (
                [r]
                if r
                and r["LEASE_TOKEN"] == p["lease_token"]
                and r["STATUS"] == PROCESSING
                and (name != "history_retry" or r["ATTEMPTS"] < r["MAX_ATTEMPTS"])
                else []
            )
        self.rowcount = 0
        for r in rows:
            if r["STARTED_AT"] is None:
                continue
            finished, code, message = now, None, None
            if name == "history_retry":
                outcome, code, message = p["outcome"], p["error_code"], p["error_message"] or None
            elif name == "history_release":
                outcome = p["outcome"]
            elif name == "history_reclaim":
                code = p["error_code"]
                if _unstarted(r):
                    outcome = p["not_started"]
                    message = p["unstarted_message"] + r["LEASE_OWNER"] + p["unstarted_tail"]
                else:
                    outcome, message = p["lease_expired"], p["requeued_message"]
            else:
                expired = r["ERROR_CODE"] == p["expired_code"]
                outcome = p["lease_expired"] if expired else p["failed"]
                finished, code, message = r["FINISHED_AT"], r["ERROR_CODE"], r["ERROR_MESSAGE"]
            self.conn.pending_attempts[(r["ID"], r["ATTEMPT_NO"] % p["keep"])] = {
                "ATTEMPT_NO": r["ATTEMPT_NO"],
                "WORKER_ID": r["LEASE_OWNER"],
                "STARTED_AT": r["STARTED_AT"],
                "FINISHED_AT": finished,
                "OUTCOME": outcome,
                "ERROR_CODE": code,
                "ERROR_MESSAGE": message,
            }
            self.rowcount += 1

    def _gone(self, worker: dict[str, Any], gone_after: int) -> bool:
        beat = timedelta(seconds=gone_after * worker["heartbeat_seconds"])
        return bool(worker["last_seen_at"] + beat < self.db.now)

    def _lock_now(self, row_id: Any) -> bool:
        """Lock a row for this session unless another holds it (SKIP LOCKED)."""
        holder = self.db.locks.get(row_id)
        if holder not in (None, self.conn.id):
            return False
        self.db.locks[row_id] = self.conn.id
        return True

    def _run(self, name: str, p: dict[str, Any], i: int) -> None:
        db, conn, now = self.db, self.conn, self.db.now
        view = conn.view()
        if (
            db.missing_table
            or (db.missing_limits_table and name in ("limits_probe", "limit_lock", "limit_insert"))
            or (db.missing_attempts_table and (name == "attempts_probe" or "history" in name))
        ):
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
            key, unique = p["idempotency_key"], p["unique_key"]
            if key is not None and any(
                r["MICROSERVICE"] == p["microservice"]
                and r["IDEMPOTENCY_KEY"] == key
                and r["STATUS"] in UNFINISHED
                for r in view.values()
            ):
                raise unique_violation(f"{db.table.table}_IDEM_UX")
            if unique is not None and any(
                r["MICROSERVICE"] == p["microservice"] and r["UNIQUE_KEY"] == unique
                for r in view.values()
            ):
                raise unique_violation(f"{db.table.table}_UNIQ_UX")
            row_id = next(db.ids)
            if row_id in db.rows or row_id in conn.pending:
                raise unique_violation(f"{db.table.table}_PK")
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
                UNIQUE_KEY=unique,
                CANCEL_REQUESTED=0,
                ATTEMPTS=0,
                ATTEMPT_NO=0,
                START_CONFIRMED=1,
                ATTEMPT_GIVEN_BACK=0,
                MAX_ATTEMPTS=p["max_attempts"],
                RUN_AT=now + timedelta(seconds=p["delay_seconds"]),
                DELAYED=1 if p["delay_seconds"] > 0 else None,
                CREATED_AT=now,
                UPDATED_AT=now,
            )
            conn.pending[row_id] = row
            db.locks[row_id] = conn.id
            self.rowcount = 1
            self._returning(p, i, [row], ["ID", "RUN_AT", "CREATED_AT", "UPDATED_AT"])
        elif name == "unique_holder":
            self._query(
                [
                    (r["ID"],)
                    for r in view.values()
                    if r["MICROSERVICE"] == p["microservice"] and r["UNIQUE_KEY"] == p["unique_key"]
                ]
            )
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
        elif name in ("claim_lock", "claim_lock_except"):
            skip = self._list(p, "skip") if name == "claim_lock_except" else set()
            if skip:
                assert None not in {p[n] for n in in_list_binds("skip")}, "NOT IN with a NULL"
            due = [
                r
                for r in view.values()
                if r["STATUS"] == READY
                and r["DELAYED"] is None
                and r["MICROSERVICE"] == p["microservice"]
                and r["RUN_AT"] <= now
                and (r["ACTION"] is None or r["ACTION"] not in skip)
                and (p["microservice"], r["ACTION"]) not in db.paused
            ]
            due.sort(key=lambda r: (-r["PRIORITY"], r["RUN_AT"], r["ID"]))
            rows = [(r["ID"], r["ACTION"], r["ATTEMPTS"], r["MAX_ATTEMPTS"]) for r in due]
            self._query(rows, lock=True)
        elif name == "promote_lock":
            due = [
                r
                for r in view.values()
                if r["STATUS"] == READY
                and r["DELAYED"] == 1
                and r["MICROSERVICE"] == p["microservice"]
                and r["RUN_AT"] <= now
            ]
            due.sort(key=lambda r: (r["RUN_AT"], r["ID"]))
            self._query([(r["ID"],) for r in due], lock=True)
        elif name == "promote":
            for row_id in self._ids(p):
                r = view.get(row_id)
                if r and r["STATUS"] == READY and r["DELAYED"] == 1:
                    conn.write(row_id)["DELAYED"] = None
                    self.rowcount += 1
        elif name == "limit_waiting":
            due = [
                r["RUN_AT"]
                for r in view.values()
                if r["STATUS"] == READY
                and r["DELAYED"] is None
                and r["MICROSERVICE"] == p["microservice"]
                and r["ACTION"] == p["action"]
                and r["RUN_AT"] <= now
            ]
            self._query([(min(due, default=None), now)])
        elif name == "fail_exhausted":
            for row_id in self._ids(p):
                r = view.get(row_id)
                if r and r["STATUS"] == READY and r["ATTEMPTS"] >= r["MAX_ATTEMPTS"]:
                    conn.write(row_id).update(
                        STATUS=FAILED,
                        ERROR_CODE=p["error_code"],
                        ERROR_MESSAGE=p["error_message"],
                        FINISHED_AT=now,
                        UPDATED_AT=now,
                    )
                    self.rowcount += 1
        elif name == "limit_lock":
            wanted = self._list(p, "action")
            rows = [
                (action,)
                for ms, action in sorted(db.limits | conn.pending_limits)
                if ms == p["microservice"] and action in wanted
            ]
            self._pending_rows = []
            self._buffer = [
                row for row in rows if self._lock_now(("LIMITS", p["microservice"], row[0]))
            ]
        elif name == "limit_insert":
            key = (p["microservice"], p["action"])
            holder = db.locks.get(("LIMITS", *key))
            assert key in db.limits or holder in (None, conn.id), "the fake would block here"
            if key in db.limits or key in conn.pending_limits:
                raise unique_violation(f"{db.table.table}_LIMITS_PK")
            conn.pending_limits.add(key)
            db.locks[("LIMITS", *key)] = conn.id
            self.rowcount = 1
        elif name == "running_counts":
            wanted = self._list(p, "action")
            counts: dict[str, int] = {}
            for r in view.values():
                if (
                    r["MICROSERVICE"] == p["microservice"]
                    and r["STATUS"] in (ASSIGNED, PROCESSING)
                    and r["ACTION"] in wanted
                ):
                    counts[r["ACTION"]] = counts.get(r["ACTION"], 0) + 1
            self._query(sorted(counts.items()))
        elif name == "lock_job":
            row = view.get(p["id"])
            if row is not None and not self._lock_now(p["id"]):
                raise ora_error(
                    "ORA-30006: resource busy; acquire with WAIT timeout expired", code=30006
                )
            self._query(
                []
                if row is None
                else [(row["STATUS"], row["LEASE_TOKEN"], row["ERROR_CODE"], row["MICROSERVICE"])]
            )
        elif name == "lock_ids":
            found = [view[i] for i in sorted(self._ids(p)) if i in view]
            self._query([(r["ID"], r["CANCEL_REQUESTED"]) for r in found], lock=True)
        elif name == "existing_ids":
            self._query([(i,) for i in sorted(self._ids(p)) if i in view])
        elif name in ("claim_update", "claim_start_update"):
            start = name == "claim_start_update"
            claimed = []
            for row_id in self._ids(p):
                r = view.get(row_id)
                if r is None or r["STATUS"] != READY or r["ATTEMPTS"] >= r["MAX_ATTEMPTS"]:
                    continue
                row = conn.write(row_id)
                row.update(
                    STATUS=PROCESSING if start else ASSIGNED,
                    ATTEMPTS=row["ATTEMPTS"] + 1 if start else row["ATTEMPTS"],
                    ATTEMPT_NO=row["ATTEMPT_NO"] + 1 if start else row["ATTEMPT_NO"],
                    START_CONFIRMED=0 if start else row["START_CONFIRMED"],
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
                    ATTEMPT_NO=row["ATTEMPT_NO"] + 1,
                    START_CONFIRMED=1,
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
                    LEASE_EXPIRES_AT=now + timedelta(seconds=p["lease_seconds"]),
                    START_CONFIRMED=1,
                    UPDATED_AT=now,
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
                    DELAYED=1 if again and p["delay_seconds"] > 0 else None,
                    FINISHED_AT=None if again else now,
                    STARTED_AT=None if again else row["STARTED_AT"],
                    LEASE_OWNER=None if again else row["LEASE_OWNER"],
                    ERROR_CODE=p["error_code"],
                    ERROR_MESSAGE=p["error_message"] or None,
                    RUNTIME_MS=p["runtime_ms"],
                    LEASE_EXPIRES_AT=None,
                    CANCEL_REQUESTED=0,
                    START_CONFIRMED=1,
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
                    CANCEL_REQUESTED=0,
                    START_CONFIRMED=1,
                    UPDATED_AT=now,
                )
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
                        CANCEL_REQUESTED=0,
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
                    unstarted = _unstarted(row)
                    again = unstarted or row["ATTEMPTS"] < row["MAX_ATTEMPTS"]
                    if unstarted:
                        message = p["unstarted_message"] + row["LEASE_OWNER"] + p["unstarted_tail"]
                    else:
                        message = p["requeued_message"] if again else p["failed_message"]
                    row.update(
                        STATUS=READY if again else FAILED,
                        ATTEMPTS=row["ATTEMPTS"] - 1
                        if unstarted and row["ATTEMPTS"] > 0
                        else row["ATTEMPTS"],
                        ATTEMPT_GIVEN_BACK=1 if unstarted else row["ATTEMPT_GIVEN_BACK"],
                        FINISHED_AT=None if again else now,
                        STARTED_AT=None if again else row["STARTED_AT"],
                        LEASE_OWNER=None if again else row["LEASE_OWNER"],
                        LEASE_TOKEN=None if again else row["LEASE_TOKEN"],
                        ERROR_CODE=p["error_code"],
                        ERROR_MESSAGE=message,
                        LEASE_EXPIRES_AT=None,
                        CANCEL_REQUESTED=0,
                        START_CONFIRMED=1,
                        UPDATED_AT=now,
                    )
                    done.append(row)
            self.rowcount = len(done)
            self._returning(p, i, done, ["ID", "STATUS"])
        elif name.startswith("history_"):
            self._close_attempts(name, p, view)
        elif name == "attempts":
            found = sorted(
                (a for (job, _), a in conn.attempts_view().items() if job == p["id"]),
                key=lambda a: a["ATTEMPT_NO"],
            )
            self._query([tuple(a[c] for c in ATTEMPT_COLUMNS) for a in found])
        elif name == "attempts_probe":
            self._query([])
        elif name == "stats":
            mine = [r for r in view.values() if r["MICROSERVICE"] == p["microservice"]]
            out = []
            for delayed in (None, 1):  # the claim index's branch, then the delay index's
                ready = [r for r in mine if r["STATUS"] == READY and r["DELAYED"] == delayed]
                due = [r["RUN_AT"] for r in ready if r["RUN_AT"] <= now]
                later = len(ready) - len(due)
                out.append(
                    (READY, len(ready), min(due, default=None), now if ready else None, later)
                )
            groups: dict[str, int] = {}
            for r in mine:
                if r["STATUS"] != READY:
                    groups[r["STATUS"]] = groups.get(r["STATUS"], 0) + 1
            out += [(st, n, None, None, 0) for st, n in groups.items()]
            self._query(out)
        elif name == "stats_upto":
            # Like the SQL: the claim index's branch whole; deferred, Completed and
            # Failed counts stopped at the limit; the deferred jobs' oldest due one.
            mine = [r for r in view.values() if r["MICROSERVICE"] == p["microservice"]]
            most = p["count_limit"]
            claimable = [r for r in mine if r["STATUS"] == READY and r["DELAYED"] is None]
            due = [r["RUN_AT"] for r in claimable if r["RUN_AT"] <= now]
            out = [
                (
                    READY,
                    len(claimable),
                    min(due, default=None),
                    now if claimable else None,
                    len(claimable) - len(due),
                )
            ]
            deferred = [r for r in mine if r["STATUS"] == READY and r["DELAYED"] == 1]
            deferred_due = [r["RUN_AT"] for r in deferred if r["RUN_AT"] <= now]
            out.append((READY, min(len(deferred), most), None, None, 0))
            out.append((READY, 0, None, None, min(len(deferred) - len(deferred_due), most)))
            out.append(
                (READY, 0, min(deferred_due, default=None), now if deferred_due else None, 0)
            )
            leased: dict[str, int] = {}
            for r in mine:
                if r["STATUS"] in (ASSIGNED, PROCESSING):
                    leased[r["STATUS"]] = leased.get(r["STATUS"], 0) + 1
            out += [(st, n, None, None, 0) for st, n in leased.items()]
            for st in (COMPLETED, FAILED):
                out.append((st, min(sum(r["STATUS"] == st for r in mine), most), None, None, 0))
            self._query(out)
        elif name == "purge_lock":
            cutoff = now - timedelta(seconds=p["older_than_seconds"])
            old = [
                (r["ID"],)
                for r in view.values()
                if r["MICROSERVICE"] == p["microservice"]
                and r["STATUS"] in (COMPLETED, FAILED)
                and r["FINISHED_AT"] < cutoff
            ]
            self._query(old, lock=True)
        elif name == "purge":
            doomed = [i for i in self._ids(p) if i in view]
            for row_id in doomed:
                conn.write(row_id)
                conn.pending[row_id] = None  # deleted when committed
                for key in conn.attempts_view():  # ON DELETE CASCADE
                    if key[0] == row_id:
                        conn.pending_attempts[key] = None
            self.rowcount = len(doomed)
        elif name == "limits_probe":
            self._query([])
        elif name in ("list_jobs", "list_jobs_after"):
            statuses = self._list(p, "status", STATUS_LIST_SIZE)
            rows = [
                r
                for r in self._filtered(view, p)
                if (p["any_status"] == 1 or r["STATUS"] in statuses)
                and (
                    name == "list_jobs"
                    or (r["CREATED_AT"], r["ID"]) < (p["after_created"], p["after_id"])
                )
                and (
                    p["scheduled"] is None
                    or p["scheduled"] == int(r["STATUS"] == READY and r["RUN_AT"] > now)
                )
                and (
                    p["error_text"] is None
                    or p["error_text"].lower() in (r["ERROR_MESSAGE"] or "").lower()
                )
            ]
            rows.sort(key=lambda r: (r["CREATED_AT"], r["ID"]), reverse=True)
            self._query([tuple(r[c] for c in JOB_COLUMNS) for r in rows[: p["page_size"]]])
        elif name in ("filter_failed", "filter_failed_text"):
            text = p.get("error_text")
            self._query(
                [
                    (r["ID"],)
                    for r in self._filtered(view, p)
                    if r["STATUS"] == FAILED
                    and (text is None or text.lower() in (r["ERROR_MESSAGE"] or "").lower())
                ]
            )
        elif name == "retry_failed":
            r = view.get(p["id"])
            if r and r["MICROSERVICE"] == p["microservice"] and r["STATUS"] == FAILED:
                key = r["IDEMPOTENCY_KEY"]
                if key is not None and any(
                    o["MICROSERVICE"] == r["MICROSERVICE"]
                    and o["IDEMPOTENCY_KEY"] == key
                    and o["STATUS"] in UNFINISHED
                    for o in view.values()
                ):
                    raise unique_violation(f"{db.table.table}_IDEM_UX")
                conn.write(p["id"]).update(
                    STATUS=READY,
                    ATTEMPTS=0,
                    RUN_AT=now,
                    ASSIGNED_AT=None,
                    STARTED_AT=None,
                    FINISHED_AT=None,
                    LEASE_OWNER=None,
                    LEASE_TOKEN=None,
                    LEASE_EXPIRES_AT=None,
                    RESULTS=None,
                    ERROR_CODE=None,
                    ERROR_MESSAGE=None,
                    RUNTIME_MS=None,
                    CANCEL_REQUESTED=0,
                    DELAYED=None,
                    START_CONFIRMED=1,
                    UPDATED_AT=now,
                )
                self.rowcount = 1
        elif name == "cancel_waiting":
            r = view.get(p["id"])
            if r and r["STATUS"] in (READY, ASSIGNED):
                conn.write(p["id"]).update(
                    STATUS=FAILED,
                    ERROR_CODE=p["error_code"],
                    ERROR_MESSAGE=p["error_message"],
                    FINISHED_AT=now,
                    LEASE_EXPIRES_AT=None,
                    UPDATED_AT=now,
                )
                self.rowcount = 1
        elif name == "cancel_running":
            r = view.get(p["id"])
            if r and r["STATUS"] == PROCESSING:
                conn.write(p["id"]).update(CANCEL_REQUESTED=1, UPDATED_AT=now)
                self.rowcount = 1
        elif name == "activity_counts":
            counted: dict[tuple[Any, str, Any], list[dict[str, Any]]] = {}
            for r in view.values():
                if r["MICROSERVICE"] == p["microservice"]:
                    branch = r["DELAYED"] if r["STATUS"] == READY else None
                    counted.setdefault((r["ACTION"], r["STATUS"], branch), []).append(r)
            self._query(
                [
                    (
                        action,
                        status,
                        len(rs),
                        min(
                            (r["RUN_AT"] for r in rs if status == READY and r["RUN_AT"] <= now),
                            default=None,
                        ),
                        sum(1 for r in rs if status == READY and r["RUN_AT"] > now),
                    )
                    for (action, status, _), rs in counted.items()
                ]
            )
        elif name == "activity_minutes":
            per: dict[tuple[datetime, str], int] = {}
            for r in view.values():
                if (
                    r["MICROSERVICE"] == p["microservice"]
                    and r["STATUS"] in (COMPLETED, FAILED)
                    and r["FINISHED_AT"] >= p["since"]
                ):
                    minute = r["FINISHED_AT"].replace(second=0, microsecond=0)
                    per[(minute, r["STATUS"])] = per.get((minute, r["STATUS"]), 0) + 1
            self._query([(m, s, n) for (m, s), n in per.items()])
        elif name == "db_now":
            self._query([(now,)])
        elif name in ("find_by_id", "find_by_unique", "find_by_idempotency"):
            if name == "find_by_id":
                hits = [view[p["id"]]] if p["id"] in view else []
            else:
                column = "UNIQUE_KEY" if name == "find_by_unique" else "IDEMPOTENCY_KEY"
                hits = [r for r in view.values() if r[column] == p["key"]]
                hits.sort(key=lambda r: r["ID"], reverse=True)
            hits = [r for r in hits if r["MICROSERVICE"] == p["microservice"]]
            self._query([tuple(r[c] for c in JOB_COLUMNS) for r in hits[: p.get("most", 100)]])
        elif name == "forget_sessions":
            for sid in [k for k, until in db.sessions.items() if until <= now]:
                del db.sessions[sid]
        elif name == "revoke_session":
            assert p["until"].tzinfo is None
            db.sessions[p["session_id"]] = max(
                db.sessions.get(p["session_id"], p["until"]), p["until"]
            )
            self.rowcount = 1
        elif name == "session_revoked":
            until = db.sessions.get(p["session_id"])
            self._query([(int(until is not None and until > now),)])
        elif name in ("workers_probe", "paused_probe"):
            self._query([])
        elif name == "heartbeat":
            assert isinstance(p["started_at"], datetime) and p["started_at"].tzinfo is None
            db.workers[(p["microservice"], p["worker_id"])] = {
                **p,
                "last_seen_at": now,
            }
            self.rowcount = 1
        elif name == "remove_worker":
            self.rowcount = int(
                db.workers.pop((p["microservice"], p["worker_id"]), None) is not None
            )
        elif name == "list_workers":
            rows = sorted(
                (w for (ms, _), w in db.workers.items() if ms == p["microservice"]),
                key=lambda w: (w["started_at"], w["worker_id"]),
            )
            self._query(
                [
                    (
                        w["worker_id"],
                        w["microservice"],
                        w["host"],
                        w["pid"],
                        w["version"],
                        w["started_at"],
                        w["heartbeat_seconds"],
                        w["actions"],
                        w["concurrency"],
                        w["running"],
                        w["last_seen_at"],
                        int(self._gone(w, p["gone_after"])),
                    )
                    for w in rows
                ]
            )
        elif name == "gone_lock":
            gone = {
                wid
                for (ms, wid), w in db.workers.items()
                if ms == p["microservice"] and self._gone(w, p["gone_after"])
            }
            leased = [
                (r["ID"],)
                for r in sorted(view.values(), key=lambda r: r["ID"])
                if r["MICROSERVICE"] == p["microservice"]
                and r["STATUS"] in (ASSIGNED, PROCESSING)
                and r["LEASE_OWNER"] in gone
            ]
            self._query(leased, lock=True)
        elif name == "end_leases":
            for row_id in self._ids(p):
                r = view.get(row_id)
                if r and r["STATUS"] in (ASSIGNED, PROCESSING):
                    conn.write(row_id)["LEASE_EXPIRES_AT"] = now - timedelta(seconds=1)
                    self.rowcount += 1
        elif name == "forget_gone":
            cutoff = now - timedelta(seconds=p["older_than_seconds"])
            doomed = [
                key
                for key, w in db.workers.items()
                if key[0] == p["microservice"]
                and self._gone(w, p["gone_after"])
                and w["last_seen_at"] < cutoff
            ]
            for key in doomed:
                del db.workers[key]
            self.rowcount = len(doomed)
        elif name == "pause":
            key = (p["microservice"], p["action"])
            if key in db.paused:
                raise unique_violation(f"{db.table.table}_PAUSED_PK")
            db.paused[key] = now
            self.rowcount = 1
        elif name == "resume":
            self.rowcount = int(db.paused.pop((p["microservice"], p["action"]), None) is not None)
        elif name == "paused":
            self._query(
                sorted((a, at) for (ms, a), at in db.paused.items() if ms == p["microservice"])
            )
        else:  # pragma: no cover - every name above
            raise AssertionError(name)


def _unstarted(row: dict[str, Any]) -> bool:
    """A start never confirmed whose attempt was never given back (the reclaim's CASE)."""
    return row["START_CONFIRMED"] == 0 and row["ATTEMPT_GIVEN_BACK"] == 0


def utc(value: datetime) -> datetime:
    """A fake DB timestamp as the queue reports it."""
    return value.replace(tzinfo=UTC)
