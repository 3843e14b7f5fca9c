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
from usvc_oracle.cli import apply_ddl, main
from usvc_oracle_fake import ora_error


class DdlConnection:
    """A session that remembers created objects and answers ORA-00955 for a second CREATE,
    as Oracle does."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.closed_cursors = 0

    def cursor(self) -> Any:
        conn = self

        class Cursor:
            async def execute(self, sql: str, parameters: Any = None) -> None:
                head = sql.split("(", maxsplit=1)[0]
                if head in conn.created:
                    raise ora_error(
                        "ORA-00955: name is already used by an existing object", code=955
                    )
                conn.created.append(head)

            def close(self) -> None:
                conn.closed_cursors += 1

        return Cursor()


async def test_apply_is_idempotent() -> None:
    """The first apply creates the table and four indexes; a second reports them as there."""
    conn = DdlConnection()
    statements = ddl_statements(TableName.parse("app.jobs"))
    first, second = io.StringIO(), io.StringIO()
    assert await apply_ddl(conn, statements, first) == 5  # type: ignore[arg-type]
    assert await apply_ddl(conn, statements, second) == 0  # type: ignore[arg-type]
    assert first.getvalue().count("created: ") == 5
    assert second.getvalue().count("exists:  ") == 5
    assert 'CREATE TABLE "APP"."JOBS"' in first.getvalue()
    assert conn.closed_cursors == 10


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
    """`ddl` prints each statement once, terminated for SQL*Plus, for --table."""
    out = io.StringIO()
    assert main(["ddl", "--table", "app.jobs"], out=out) == 0
    text = out.getvalue()
    assert text.count(";\n") == 5
    assert 'CREATE UNIQUE INDEX "APP"."JOBS_IDEM_UX"' in text


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
    """`check` connects like a worker; with nothing listening it fails naming the DSN."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ORACLE_DSN", f"127.0.0.1:{port}/FREEPDB1")
    monkeypatch.setenv("ORACLE_USER", "app")
    monkeypatch.setenv("ORACLE_PASSWORD", "secret")
    monkeypatch.setenv("ORACLE_RETRY_BACKOFF_SECONDS", "0")
    assert main(["check"], out=io.StringIO()) == 2
    assert f"cannot reach Oracle (ORACLE_DSN='127.0.0.1:{port}/FREEPDB1'" in capsys.readouterr().err


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
