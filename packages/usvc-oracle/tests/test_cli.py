"""``python -m usvc_oracle ddl|apply|check``."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from typing import Any

import oracledb
import pytest
from usvc_oracle import TableName, ddl_statements
from usvc_oracle.cli import LayoutError, apply_ddl, apply_schema, main
from usvc_oracle.sql import (
    BASE_COLUMNS,
    COLUMNS_QUERY,
    DESCENDING_INDEXES_QUERY,
    INDEX_STATE_QUERY,
    INDEXES,
    JOB_COLUMNS,
    SET_DDL_LOCK_TIMEOUT,
    SYNONYM_QUERY,
)
from usvc_oracle_fake import FakeDatabase, FakePool, ora_error


def all_indexes(table: str) -> dict[str, tuple[str, str | None]]:
    """Every index the shipped DDL creates for ``table``, VALID."""
    names = [f"{table}_PK", f"{table}_LIMITS_PK", *(f"{table}_{s}" for s in INDEXES)]
    return dict.fromkeys(names, ("VALID", "ENABLED"))


class DdlConnection:
    """A session that remembers created objects and answers ORA-00955 for a second CREATE
    and ORA-01430 for a column added twice, as Oracle does; the data dictionary query
    returns ``columns`` (the queue table's, as the user sees them)."""

    def __init__(
        self,
        columns: set[str] | None = None,
        descending: set[str] = frozenset(),
        *,
        indexes: dict[str, tuple[str, str | None]] | None = None,
        synonyms: dict[str, tuple[str, str]] | None = None,
        table: str = "MICRO_SVC",
    ) -> None:
        self.created: list[str] = []
        self.executed: list[str] = []
        self.columns = set(columns or ())
        self.descending = set(descending)
        self.closed_cursors = 0
        #: index name -> (STATUS, FUNCIDX_STATUS); an existing table has all of them
        self.indexes = dict(
            indexes if indexes is not None else all_indexes(table) if columns else {}
        )
        self.synonyms = dict(synonyms or {})

    def cursor(self) -> Any:
        conn = self

        class Cursor:
            def __init__(self) -> None:
                self.rows: list[tuple[str]] = []

            async def execute(self, sql: str, parameters: Any = None) -> None:
                conn.executed.append(sql)
                if sql == COLUMNS_QUERY:
                    synonym = parameters["table_name"] in conn.synonyms
                    self.rows = [] if synonym else [(c,) for c in sorted(conn.columns)]
                    return
                if sql == SYNONYM_QUERY:
                    target = conn.synonyms.get(parameters["table_name"])
                    self.rows = [target] if target else []
                    return
                if sql == INDEX_STATE_QUERY:
                    table = parameters["table_name"]
                    self.rows = [
                        (name, *state)
                        for name, state in sorted(conn.indexes.items())
                        if name.startswith(f"{table}_")
                        and (table.endswith("_LIMITS") or not name.startswith(f"{table}_LIMITS_"))
                    ]
                    return
                if sql == SET_DDL_LOCK_TIMEOUT:
                    return
                if sql == DESCENDING_INDEXES_QUERY:
                    self.rows = [(c,) for c in sorted(conn.descending)]
                    return
                if sql.startswith("ALTER TABLE"):
                    column = sql.split("ADD (")[1].split(maxsplit=1)[0]
                    if column in conn.columns:
                        raise ora_error("ORA-01430: column being added already exists", 1430)
                    conn.columns.add(column)
                    return
                head = sql.split("(", maxsplit=1)[0]
                if head in conn.created:
                    raise ora_error(
                        "ORA-00955: name is already used by an existing object", code=955
                    )
                conn.created.append(head)
                if sql.startswith('CREATE TABLE "') and "LIMITS" not in head:
                    conn.columns |= set(JOB_COLUMNS)
                words = head.split()
                name = words[words.index("INDEX" if "INDEX" in words else "TABLE") + 1]
                name = name.split(".")[-1].strip('"')
                if "INDEX" in words:
                    conn.indexes[name] = ("VALID", "ENABLED")
                else:
                    conn.indexes[f"{name}_PK"] = ("VALID", None)

            async def fetchall(self) -> list[tuple[str]]:
                return self.rows

            def close(self) -> None:
                conn.closed_cursors += 1

        return Cursor()


async def test_apply_is_idempotent() -> None:
    """The first apply creates the table, nine indexes, the fleet's two tables, the
    sessions table, the attempts table and the limits table; a second
    reports them all as there. Each apply first bounds its wait for the table's DDL lock."""
    conn = DdlConnection()
    table = TableName.parse("app.jobs")
    first, second = io.StringIO(), io.StringIO()
    assert await apply_schema(conn, table, first) == 15  # type: ignore[arg-type]
    assert conn.executed[0] == SET_DDL_LOCK_TIMEOUT == "ALTER SESSION SET DDL_LOCK_TIMEOUT = 30"
    assert not [s for s in conn.executed if s.endswith(" ONLINE")]  # a new table: no need
    conn.executed.clear()
    assert await apply_schema(conn, table, second) == 0  # type: ignore[arg-type]
    assert conn.executed[0] == SET_DDL_LOCK_TIMEOUT
    assert first.getvalue().count("created: ") == 15
    assert second.getvalue().count("exists:  ") == 15
    assert 'CREATE TABLE "APP"."JOBS"' in first.getvalue()
    assert 'CREATE TABLE "APP"."JOBS_LIMITS"' in first.getvalue()
    assert 'CREATE TABLE "APP"."JOBS_ATTEMPTS"' in first.getvalue()
    assert not [s for s in conn.executed if s.startswith("ALTER TABLE")]


async def test_apply_upgrades_an_older_usvc_table() -> None:
    """On a table of the first layout, apply adds UNIQUE_KEY, CANCEL_REQUESTED, DELAYED
    and the attempt columns (ALTER TABLE ADD) before creating the indexes that use them,
    builds those ONLINE (the table is live), creates the attempts table, and names the
    older indexes the new ones replace."""
    old = {"JOBS_PK", "JOBS_READY_IX", "JOBS_LEASE_IX", "JOBS_DONE_IX", "JOBS_IDEM_UX"}
    conn = DdlConnection(
        set(BASE_COLUMNS), indexes=dict.fromkeys(old, ("VALID", "ENABLED")), table="JOBS"
    )
    conn.created.append('CREATE TABLE "JOBS" ')
    conn.created.append('CREATE UNIQUE INDEX "JOBS_IDEM_UX" ON "JOBS" ')
    out = io.StringIO()
    # 6 columns, 8 indexes (IDEM_UX was there), the fleet's, sessions, attempts and limits
    assert await apply_schema(conn, TableName.parse("jobs"), out) == 19  # type: ignore[arg-type]
    alters = [i for i, s in enumerate(conn.executed) if s.startswith("ALTER TABLE")]
    unique_index = next(i for i, s in enumerate(conn.executed) if "JOBS_UNIQ_UX" in s)
    assert len(alters) == 6
    assert max(alters) < unique_index
    assert conn.columns == set(JOB_COLUMNS)
    assert "CANCEL_REQUESTED NUMBER(1) DEFAULT 0 NOT NULL" in conn.executed[alters[1]]
    assert "ADD (DELAYED NUMBER(1))" in conn.executed[alters[2]]
    # the attempt counter and the never-started flags: old rows count as confirmed
    assert "ADD (ATTEMPT_NO NUMBER(10) DEFAULT 0 NOT NULL)" in conn.executed[alters[3]]
    assert "ADD (START_CONFIRMED NUMBER(1) DEFAULT 1 NOT NULL)" in conn.executed[alters[4]]
    assert "ADD (ATTEMPT_GIVEN_BACK NUMBER(1) DEFAULT 0 NOT NULL)" in conn.executed[alters[5]]
    assert any(s.startswith('CREATE TABLE "JOBS_ATTEMPTS"') for s in conn.executed)
    indexes = [s for s in conn.executed if s.startswith(("CREATE INDEX", "CREATE UNIQUE"))]
    assert indexes and all(s.endswith(" INITRANS 16 ONLINE") for s in indexes)
    notes = [line for line in out.getvalue().splitlines() if line.startswith("note:")]
    assert [n.split()[2] for n in notes] == ["JOBS_READY_IX", "JOBS_LEASE_IX", "JOBS_DONE_IX"]
    assert "DROP INDEX JOBS_READY_IX once no older worker runs" in notes[0]


async def test_apply_builds_plainly_where_online_is_not_available() -> None:
    """ORA-00439 (no ONLINE builds outside Enterprise Edition): the index is built without
    ONLINE, and apply says so."""

    class StandardEdition(DdlConnection):
        def cursor(self) -> Any:
            inner = super().cursor()

            class Cursor:
                rows = property(lambda self: inner.rows)

                async def execute(self, sql: str, parameters: Any = None) -> None:
                    if sql.endswith(" ONLINE"):
                        raise ora_error("ORA-00439: feature not enabled: Online Index Build", 439)
                    await inner.execute(sql, parameters)

                async def fetchall(self) -> Any:
                    return await inner.fetchall()

                def close(self) -> None:
                    inner.close()

            return Cursor()

    conn = StandardEdition(set(JOB_COLUMNS), indexes={})
    conn.created.append('CREATE TABLE "MICRO_SVC" ')
    out = io.StringIO()
    assert await apply_schema(conn, TableName.parse("micro_svc"), out) == 14  # type: ignore[arg-type]
    assert out.getvalue().count("note:    ONLINE is not available here") == 9
    assert conn.indexes.keys() >= {f"MICRO_SVC_{s}" for s in INDEXES}


async def test_apply_follows_a_synonym() -> None:
    """ORACLE_TABLE names a synonym: apply works on the table it points to, instead of
    creating a second table (or failing on the synonym's name)."""
    conn = DdlConnection(
        set(JOB_COLUMNS), synonyms={"JOBS": ("APP", "MICRO_SVC")}, table="MICRO_SVC"
    )
    out = io.StringIO()
    assert await apply_schema(conn, TableName.parse("jobs"), out) == 15  # type: ignore[arg-type]
    assert "note:    JOBS is a synonym of APP.MICRO_SVC: applying to APP.MICRO_SVC" in (
        out.getvalue()
    )
    assert all('"APP"."MICRO_SVC' in s for s in conn.executed if s.startswith("CREATE"))


async def test_apply_names_a_ready_index_with_a_desc_key() -> None:
    """An older table's Ready index (a DESC key, which indexes every row) is kept by
    apply, which says how to replace it."""
    conn = DdlConnection(set(JOB_COLUMNS), descending={"JOBS_READY_IX"})
    out = io.StringIO()
    await apply_schema(conn, TableName.parse("app.jobs"), out)  # type: ignore[arg-type]
    assert (
        "note:    index JOBS_READY_IX of APP.JOBS has a DESC key, which indexes every row "
        "of the table: run DROP INDEX APP.JOBS_READY_IX; then `python -m usvc_oracle apply`"
    ) in out.getvalue()


async def test_apply_refuses_a_table_of_another_layout() -> None:
    """A table named like ORACLE_TABLE but of another layout is neither used nor altered:
    apply names the missing columns and changes nothing."""
    conn = DdlConnection({"ID", "NAME", "STATUS"})
    with pytest.raises(LayoutError, match=r"another layout .*MICROSERVICE.*Set ORACLE_TABLE"):
        await apply_schema(conn, TableName.parse("jobs"), io.StringIO())  # type: ignore[arg-type]
    assert conn.executed == [SET_DDL_LOCK_TIMEOUT, COLUMNS_QUERY, COLUMNS_QUERY]


async def test_apply_stops_on_a_real_error() -> None:
    """An error other than "already exists" (here: no privilege) stops the apply."""

    class Refusing(DdlConnection):
        def cursor(self) -> Any:
            class Cursor:
                async def execute(self, sql: str, parameters: Any = None) -> None:
                    raise ora_error("ORA-01031: insufficient privileges", code=1031)

                def close(self) -> None:
                    return None

            return Cursor()

    out = io.StringIO()
    with pytest.raises(oracledb.DatabaseError, match="ORA-01031"):
        await apply_ddl(Refusing(), ddl_statements(TableName.parse("T")), out)  # type: ignore[arg-type]
    assert out.getvalue() == ""


def test_ddl_prints_statements_for_sqlplus() -> None:
    """`ddl` prints each statement once, terminated for SQL*Plus, for --table; the upgrade
    of an older table follows as comments."""
    out = io.StringIO()
    assert main(["ddl", "--table", "app.jobs"], out=out) == 0
    text = out.getvalue()
    assert text.count(";\n\n") == 15
    assert 'CREATE UNIQUE INDEX "APP"."JOBS_IDEM_UX"' in text
    assert '-- ALTER TABLE "APP"."JOBS" ADD (UNIQUE_KEY VARCHAR2(256 CHAR));' in text
    assert " DESC" not in text


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORACLE_USER", "app")
    monkeypatch.setenv("ORACLE_PASSWORD", "secret")
    monkeypatch.setenv("ORACLE_RETRY_BACKOFF_SECONDS", "0")


@pytest.mark.usefixtures("credentials")
def test_apply_without_ddl_privileges_names_the_ddl_grants(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORA-01031 from apply names what creating the table needs - CREATE TABLE, CREATE
    SEQUENCE (identity column) and a tablespace quota - not the workers' DML grants."""

    class Refusing(DdlConnection):
        def cursor(self) -> Any:
            class Cursor:
                async def execute(self, sql: str, parameters: Any = None) -> None:
                    if sql != COLUMNS_QUERY:
                        raise ora_error("ORA-01031: insufficient privileges", code=1031)

                async def fetchall(self) -> list[Any]:
                    return []

                def close(self) -> None:
                    return None

            return Cursor()

        async def close(self) -> None:
            return None

    async def connect(settings: Any) -> Refusing:
        return Refusing()

    monkeypatch.setattr("usvc_oracle.cli._connect", connect)
    assert main(["apply"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "ORA-01031" in err
    assert "CREATE TABLE and CREATE SEQUENCE" in err
    assert "QUOTA" in err
    assert "SELECT, INSERT" not in err


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize(
    ("columns", "says"),
    [
        (
            set(BASE_COLUMNS),
            "older version (no column UNIQUE_KEY, CANCEL_REQUESTED, DELAYED, ATTEMPT_NO, "
            "START_CONFIRMED, ATTEMPT_GIVEN_BACK): run",
        ),
        (  # a table of the version before the attempt history
            set(BASE_COLUMNS) | {"UNIQUE_KEY", "CANCEL_REQUESTED", "DELAYED"},
            "older version (no column ATTEMPT_NO, START_CONFIRMED, ATTEMPT_GIVEN_BACK): run",
        ),
        ({"ID", "NAME"}, "another layout (no column MICROSERVICE, ACTION"),
    ],
    ids=["older", "before-history", "foreign"],
)
def test_check_reports_the_layout_of_an_existing_table(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, columns: set[str], says: str
) -> None:
    """`check` on a table lacking columns says whether it is an older usvc table (apply
    adds them) or a table of another layout (not used: pick another ORACLE_TABLE)."""
    db = FakeDatabase()
    db.fail("probe", lambda: ora_error('ORA-00904: "UNIQUE_KEY": invalid identifier', 904))

    def queue(settings: Any) -> Any:
        from usvc_oracle import OracleQueue

        return OracleQueue(settings, pool_factory=lambda s: FakePool(db))

    class Dictionary(DdlConnection):
        async def close(self) -> None:
            return None

    async def connect(settings: Any) -> Dictionary:
        return Dictionary(columns)

    monkeypatch.setattr("usvc_oracle.cli.OracleQueue", queue)
    monkeypatch.setattr("usvc_oracle.cli._connect", connect)
    assert main(["check"], out=io.StringIO()) == 1
    assert says in capsys.readouterr().err


def test_hostile_table_is_refused_by_the_command(capsys: Any) -> None:
    """A hostile --table fails with status 2 and prints nothing to run."""
    out = io.StringIO()
    assert main(["ddl", "--table", "X;DROP TABLE Y"], out=out) == 2
    assert out.getvalue() == ""
    assert "not a plain Oracle name" in capsys.readouterr().err


def test_apply_without_credentials_says_what_is_missing(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`apply` without ORACLE_USER/ORACLE_PASSWORD fails before connecting, naming both."""
    monkeypatch.delenv("ORACLE_USER", raising=False)
    monkeypatch.delenv("ORACLE_PASSWORD", raising=False)
    assert main(["apply"], out=io.StringIO()) == 2
    assert "ORACLE_USER and ORACLE_PASSWORD required" in capsys.readouterr().err


def test_check_reports_an_unreachable_database(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` connects like a worker; with nothing listening it exits 3 (unavailable, as
    the `usvc` command), naming the DSN and the cause under DPY-6005."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ORACLE_DSN", f"127.0.0.1:{port}/FREEPDB1")
    monkeypatch.setenv("ORACLE_USER", "app")
    monkeypatch.setenv("ORACLE_PASSWORD", "secret")
    monkeypatch.setenv("ORACLE_RETRY_BACKOFF_SECONDS", "0")
    assert main(["check"], out=io.StringIO()) == 3
    err = capsys.readouterr().err
    assert f"cannot reach Oracle (ORACLE_DSN='127.0.0.1:{port}/FREEPDB1'" in err
    assert "DPY-6005" in err
    assert "[ConnectionRefusedError: " in err


@pytest.mark.usefixtures("credentials")
def test_apply_against_an_unreachable_database_exits_3(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`apply` cannot connect: status 3 and the cause, not only DPY-6005."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ORACLE_DSN", f"127.0.0.1:{port}/FREEPDB1")
    monkeypatch.setenv("ORACLE_CONNECT_TIMEOUT_SECONDS", "2")
    assert main(["apply"], out=io.StringIO()) == 3
    err = capsys.readouterr().err
    assert "DPY-6005" in err and "[ConnectionRefusedError: " in err


def _check_with(monkeypatch: pytest.MonkeyPatch, conn: DdlConnection) -> tuple[int, str]:
    def queue(settings: Any) -> Any:
        from usvc_oracle import OracleQueue

        db = FakeDatabase(table=settings.table)
        return OracleQueue(settings, pool_factory=lambda s: FakePool(db))

    async def close() -> None:
        return None

    async def connect(settings: Any) -> DdlConnection:
        conn.close = close  # type: ignore[attr-defined]
        return conn

    monkeypatch.setattr("usvc_oracle.cli.OracleQueue", queue)
    monkeypatch.setattr("usvc_oracle.cli._connect", connect)
    out = io.StringIO()
    return main(["check"], out=out), out.getvalue()


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize(
    ("state", "says"),
    [
        (None, "index MICRO_SVC_CLAIM_IX is missing"),
        (("UNUSABLE", "ENABLED"), "MICRO_SVC_CLAIM_IX is UNUSABLE: the optimizer cannot use"),
        (("VALID", "DISABLED"), "function-based index MICRO_SVC_CLAIM_IX is DISABLED"),
    ],
    ids=["missing", "unusable", "disabled"],
)
def test_check_verifies_every_index(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, state: Any, says: str
) -> None:
    """Issue 22 item 10: a missing claim index turns every claim into a full scan; `check`
    reads ALL_INDEXES and fails (status 1) naming the index and the fix."""
    indexes = all_indexes("MICRO_SVC")
    if state is None:
        del indexes["MICRO_SVC_CLAIM_IX"]
    else:
        indexes["MICRO_SVC_CLAIM_IX"] = state
    assert _check_with(monkeypatch, DdlConnection(set(JOB_COLUMNS), indexes=indexes))[0] == 1
    assert says in capsys.readouterr().err


@pytest.mark.usefixtures("credentials")
def test_check_reports_names_over_the_identifier_limit(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database with 30-byte identifiers (connection.max_identifier_length): a table name
    whose derived index names do not fit is reported with the longest name that would."""
    monkeypatch.setenv("ORACLE_TABLE", "A_RATHER_LONG_QUEUE_NAME")
    conn = DdlConnection(set(JOB_COLUMNS), table="A_RATHER_LONG_QUEUE_NAME")
    conn.max_identifier_length = 30  # type: ignore[attr-defined]
    code, _ = _check_with(monkeypatch, conn)
    assert code == 1
    err = capsys.readouterr().err
    assert "identifiers of 30 bytes, too few for A_RATHER_LONG_QUEUE_NAME_CLAIM_IX" in err
    assert "at most 18 characters" in err


@pytest.mark.usefixtures("credentials")
def test_check_follows_a_synonym(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker account that reaches the table through a synonym: `check` follows it to
    the table (and the limits table's own synonym) and checks that table's indexes."""
    monkeypatch.setenv("ORACLE_TABLE", "JOBS")
    conn = DdlConnection(
        set(JOB_COLUMNS),
        indexes=all_indexes("MICRO_SVC"),
        synonyms={"JOBS": ("APP", "MICRO_SVC"), "JOBS_LIMITS": ("APP", "MICRO_SVC_LIMITS")},
    )
    code, out = _check_with(monkeypatch, conn)
    assert code == 0, capsys.readouterr().err
    assert "JOBS: a synonym of APP.MICRO_SVC" in out
    assert "APP.MICRO_SVC: every index present and VALID" in out
    index_queries = [i for i, sql in enumerate(conn.executed) if sql == INDEX_STATE_QUERY]
    assert len(index_queries) == 2  # the table's and the limits table's, both followed


@pytest.mark.slow
def test_module_entry_point_runs() -> None:
    """`python -m usvc_oracle ddl` works as a real process, reading ORACLE_TABLE."""
    env = {**os.environ, "ORACLE_TABLE": "jobs"}
    done = subprocess.run(
        [sys.executable, "-m", "usvc_oracle", "ddl"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('CREATE TABLE "JOBS" (')


@pytest.mark.usefixtures("credentials")
def test_check_warns_of_a_ready_index_with_a_desc_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` of a usable table still warns about a Ready index with a DESC key."""
    db = FakeDatabase()

    def queue(settings: Any) -> Any:
        from usvc_oracle import OracleQueue

        return OracleQueue(settings, pool_factory=lambda s: FakePool(db))

    class Dictionary(DdlConnection):
        async def close(self) -> None:
            return None

    async def connect(settings: Any) -> Dictionary:
        return Dictionary(set(JOB_COLUMNS), descending={"MICRO_SVC_READY_IX"})

    monkeypatch.setattr("usvc_oracle.cli.OracleQueue", queue)
    monkeypatch.setattr("usvc_oracle.cli._connect", connect)
    out = io.StringIO()
    assert main(["check"], out=out) == 0
    text = out.getvalue()
    assert "MICRO_SVC: reachable, tables and columns present" in text
    assert "warning: index MICRO_SVC_READY_IX of MICRO_SVC has a DESC key" in text
