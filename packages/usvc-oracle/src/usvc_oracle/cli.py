"""Command line: print the DDL, apply it idempotently, or check a deployment.

    python -m usvc_oracle ddl   [--table NAME]   # print CREATE statements (SQL*Plus style)
    python -m usvc_oracle apply [--table NAME]   # create what is missing; safe to re-run
    python -m usvc_oracle check [--table NAME]   # connect and verify the table, like a worker

``apply`` and ``check`` connect with ORACLE_DSN, ORACLE_USER and ORACLE_PASSWORD (environment
or ``.env``). Run ``apply`` with a user allowed to create tables and sequences, before
starting workers: DDL commits implicitly, so workers never run it themselves. ``apply`` adds
the columns of a newer version to an older usvc table, and refuses a table of another layout;
on a live table it waits at most DDL_LOCK_TIMEOUT for its lock and builds indexes ONLINE.
``check`` follows a synonym to its table and verifies every index exists and is VALID.
Exit status: 0 fine, 1 something to fix (the message says what), 2 bad settings, 3 the
database cannot be reached (the cause is printed), as the ``usvc`` command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import oracledb
from usvc_core.errors import ConfigurationError, QueueUnavailableError, UsvcError

from usvc_oracle.driver import ConnectionLike
from usvc_oracle.failures import FailureKind, classify
from usvc_oracle.naming import TableName
from usvc_oracle.queue import OracleQueue
from usvc_oracle.settings import OracleSettings, load_oracle_settings
from usvc_oracle.sql import (
    BASE_COLUMNS,
    COLUMNS_QUERY,
    DDL_IGNORED_ERRORS,
    DESCENDING_INDEXES_QUERY,
    INDEX_STATE_QUERY,
    INDEXES,
    JOB_COLUMNS,
    OBSOLETE_INDEXES,
    SET_DDL_LOCK_TIMEOUT,
    SYNONYM_QUERY,
    UPGRADE_COLUMNS,
    ddl_statements,
    upgrade_statements,
)

__all__ = [
    "EXIT_UNAVAILABLE",
    "LayoutError",
    "apply_ddl",
    "apply_schema",
    "index_report",
    "main",
    "resolve_table",
    "table_columns",
]

#: The exit status when the database cannot be reached (as the ``usvc`` command's).
EXIT_UNAVAILABLE = 3
#: ORA-00439: feature not enabled (ONLINE index builds need Enterprise Edition).
_FEATURE_NOT_ENABLED = 439


class LayoutError(ConfigurationError):
    """The table exists but is not (or not yet) a usvc queue table of this version."""


def _first_line(sql: str) -> str:
    return sql.splitlines()[0].rstrip(" (")


async def apply_ddl(conn: ConnectionLike, statements: Sequence[str], out: TextIO) -> int:
    """Run each statement; an object that already exists is reported and skipped.

    Returns how many statements created something.
    """
    created = 0
    for sql in statements:
        cur = conn.cursor()
        try:
            try:
                await cur.execute(sql)
            except oracledb.DatabaseError as exc:
                code = _ora_code(exc)
                if code != _FEATURE_NOT_ENABLED or not sql.endswith(" ONLINE"):
                    raise
                # No online builds in this edition: a plain build (locks the table for
                # its duration, which DDL_LOCK_TIMEOUT does not bound).
                print(f"note:    ONLINE is not available here: {_first_line(sql)}", file=out)
                await cur.execute(sql.removesuffix(" ONLINE"))
        except oracledb.DatabaseError as exc:
            if _ora_code(exc) in DDL_IGNORED_ERRORS:
                print(f"exists:  {_first_line(sql)}", file=out)
                continue
            raise
        finally:
            cur.close()
        created += 1
        print(f"created: {_first_line(sql)}", file=out)
    return created


def _ora_code(exc: oracledb.DatabaseError) -> int:
    err = exc.args[0] if exc.args else None
    return int(getattr(err, "code", 0) or 0)


async def _rows(conn: ConnectionLike, sql: str, table: TableName) -> list[Any]:
    cur = conn.cursor()
    try:
        await cur.execute(sql, {"owner": table.schema, "table_name": table.table})
        return list(await cur.fetchall())
    finally:
        cur.close()


async def _names(conn: ConnectionLike, sql: str, table: TableName) -> set[str]:
    return {str(r[0]) for r in await _rows(conn, sql, table)}


async def resolve_table(conn: ConnectionLike, table: TableName) -> TableName:
    """The table ``table`` stands for: itself when the user sees a table of that name,
    else the table a private or public synonym of that name points to."""
    if await table_columns(conn, table):
        return table
    found = await _rows(conn, SYNONYM_QUERY, table)
    if not found:
        return table
    owner, name = found[0]
    return TableName(table=str(name), schema=str(owner))


def _limits_table(table: TableName) -> TableName:
    return TableName(table=f"{table.table}_LIMITS", schema=table.schema)


def _qualified(table: TableName, name: str) -> str:
    return f"{table.schema}.{name}" if table.schema else name


async def index_report(conn: ConnectionLike, table: TableName) -> tuple[list[str], list[str]]:
    """What is wrong with ``table``'s indexes (missing, UNUSABLE, a disabled function-based
    index: claims and reclaims then scan the whole table), and warnings (indexes of an
    older version still there). ``table`` is the real table (see resolve_table)."""
    problems: list[str] = []
    warnings: list[str] = []
    # The database's identifier limit (30 bytes before 12.2 compatibility, else 128), as
    # the driver reports it: every derived name (<table>_FINISHED_IX...) must fit.
    most = getattr(conn, "max_identifier_length", None)
    derived = [f"{table.table}_{s}" for s in (*INDEXES, "LIMITS_PK", "ATTEMPTS_CK")]
    too_long = [n for n in derived if isinstance(most, int) and len(n.encode()) > most]
    if too_long and isinstance(most, int):
        problems.append(
            f"the database allows identifiers of {most} bytes, too few for "
            f"{', '.join(too_long)}: choose an ORACLE_TABLE of at most "
            f"{most - (max(len(n) for n in derived) - len(table.table))} characters"
        )
    limits = await resolve_table(conn, _limits_table(table))
    expected = {
        table: {f"{table.table}_PK", *(f"{table.table}_{s}" for s in INDEXES)},
        limits: {f"{limits.table}_PK"},
    }
    for owner_table, names in expected.items():
        states = {str(n): (s, f) for n, s, f in await _rows(conn, INDEX_STATE_QUERY, owner_table)}
        for name in sorted(names):
            where = _qualified(owner_table, name)
            if name not in states:
                problems.append(
                    f"index {where} is missing (without it claims, reclaims or purges read "
                    "the whole table): run `python -m usvc_oracle apply`"
                )
                continue
            status, funcidx = states[name]
            if status not in ("VALID", "N/A"):
                problems.append(
                    f"index {where} is {status}: the optimizer cannot use it; run "
                    f"ALTER INDEX {where} REBUILD ONLINE"
                )
            if funcidx == "DISABLED":
                problems.append(
                    f"function-based index {where} is DISABLED: run ALTER INDEX {where} ENABLE"
                )
        if owner_table is table:
            for suffix in OBSOLETE_INDEXES:
                name = f"{table.table}_{suffix}"
                if name in states:
                    warnings.append(
                        f"index {_qualified(table, name)} is of an older version (replaced by "
                        "the CLAIM/DELAY/LEASED/FINISHED indexes) and costs every write: "
                        f"DROP INDEX {_qualified(table, name)} once no older worker runs"
                    )
    return problems, warnings


async def table_columns(conn: ConnectionLike, table: TableName) -> set[str]:
    """The columns of ``table`` the connected user can see (empty: no such table)."""
    return await _names(conn, COLUMNS_QUERY, table)


async def _descending_note(conn: ConnectionLike, table: TableName) -> str | None:
    """What to do about an index of ``table`` with a DESC key: its SYS_OP_DESCEND key is
    never NULL, so it holds every row (the Ready index of an older version has one)."""
    names = sorted(await _names(conn, DESCENDING_INDEXES_QUERY, table))
    if not names:
        return None
    drops = "; ".join(f"DROP INDEX {table.schema + '.' if table.schema else ''}{n}" for n in names)
    return (
        f"index {', '.join(names)} of {table} has a DESC key, which indexes every row of "
        f"the table: run {drops}; then `python -m usvc_oracle apply` to create the current one"
    )


def _foreign_layout(table: TableName, missing: list[str]) -> LayoutError:
    return LayoutError(
        f"table {table} exists but has another layout (no column {', '.join(missing)}): it "
        "is not a usvc queue table, and usvc neither uses nor alters it. Set ORACLE_TABLE "
        "to another name (or rename that table)"
    )


async def apply_schema(conn: ConnectionLike, table: TableName, out: TextIO) -> int:
    """Create what is missing: the tables and indexes, and on an older usvc table the
    columns of this version (ALTER TABLE ADD, before the indexes that use them). Raises
    LayoutError for a table of another layout. Returns how many objects were created."""
    await _execute(conn, SET_DDL_LOCK_TIMEOUT)  # wait at most that for a busy table's lock
    real = await resolve_table(conn, table)
    if real != table:
        print(f"note:    {table} is a synonym of {real}: applying to {real}", file=out)
        table = real
    columns = await table_columns(conn, table)
    # On a live table, indexes are built ONLINE: claims and enqueues go on meanwhile.
    statements = ddl_statements(table, online=bool(columns))
    if columns:
        missing = [c for c in BASE_COLUMNS if c not in columns]
        if missing:
            raise _foreign_layout(table, missing)
        added = upgrade_statements(table, set(UPGRADE_COLUMNS) - columns)
        statements = [statements[0], *added, *statements[1:]]
    created = await apply_ddl(conn, statements, out)
    note = await _descending_note(conn, table)
    if note:
        print(f"note:    {note}", file=out)
    for warning in (await index_report(conn, table))[1]:
        print(f"note:    {warning}", file=out)
    return created


async def _execute(conn: ConnectionLike, sql: str) -> None:
    cur = conn.cursor()
    try:
        await cur.execute(sql)
    finally:
        cur.close()


async def _connect(settings: OracleSettings) -> Any:
    settings.require_credentials()
    return await oracledb.connect_async(
        user=settings.ORACLE_USER,
        password=settings.ORACLE_PASSWORD.get_secret_value(),
        dsn=settings.ORACLE_DSN,
        tcp_connect_timeout=settings.ORACLE_CONNECT_TIMEOUT_SECONDS,
    )


async def _apply(settings: OracleSettings, out: TextIO) -> int:
    conn = await _connect(settings)
    try:
        created = await apply_schema(conn, settings.table, out)
    finally:
        await conn.close()
    print(f"{settings.table}: {created} object(s) created", file=out)
    return 0


async def _check(settings: OracleSettings, out: TextIO) -> int:
    """Report the table's layout (missing, older, foreign), then open it as a worker does."""
    queue = OracleQueue(settings.require_credentials())
    await queue.open()  # reachability and grants first: the clearest error for those
    await queue.close()
    print(f"{settings.table}: reachable, tables and columns present", file=out)
    conn = await _connect(settings)
    try:
        table = await resolve_table(conn, settings.table)
        note = await _descending_note(conn, table)
        problems, warnings = await index_report(conn, table)
    finally:
        await conn.close()
    if table != settings.table:
        print(f"{settings.table}: a synonym of {table}", file=out)
    for warning in [*([note] if note else []), *warnings]:
        print(f"warning: {warning}", file=out)
    if problems:
        for problem in problems:
            print(f"usvc-oracle: {problem}", file=sys.stderr)
        return 1
    print(f"{table}: every index present and VALID", file=out)
    return 0


async def _layout(settings: OracleSettings) -> None:
    """Why the table does not fit, when its columns say so (raised as LayoutError)."""
    conn = await _connect(settings)
    try:
        table = await resolve_table(conn, settings.table)
        columns = await table_columns(conn, table)
    finally:
        await conn.close()
    if not columns:
        return  # absent or not visible: the ORA-00942 hint says what to do
    missing = [c for c in BASE_COLUMNS if c not in columns]
    if missing:
        raise _foreign_layout(table, missing)
    older = [c for c in JOB_COLUMNS if c not in columns]
    if older:
        raise LayoutError(
            f"table {table} is a usvc queue table of an older version (no column "
            f"{', '.join(older)}): run `python -m usvc_oracle apply` to add them"
        )


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m usvc_oracle", description="The usvc Oracle queue table."
    )
    parser.add_argument("command", choices=("ddl", "apply", "check"))
    parser.add_argument("--table", help="TABLE or SCHEMA.TABLE (default: ORACLE_TABLE)")
    args = parser.parse_args(argv)
    try:
        settings = load_oracle_settings(**({"ORACLE_TABLE": args.table} if args.table else {}))
        if args.command == "ddl":
            for sql in ddl_statements(settings.table):
                print(f"{sql};\n", file=out)
            print("-- Upgrading a usvc table of an older version adds (apply does it):", file=out)
            for sql in upgrade_statements(settings.table, set(UPGRADE_COLUMNS)):
                print(f"-- {sql};", file=out)
            return 0
    except UsvcError as exc:
        print(f"usvc-oracle: {exc}", file=sys.stderr)
        return 2
    ddl = args.command == "apply"
    try:
        return asyncio.run(_apply(settings, out) if ddl else _check(settings, out))
    except LayoutError as exc:
        print(f"usvc-oracle: {exc}", file=sys.stderr)
        return 1
    except QueueUnavailableError as exc:
        print(f"usvc-oracle: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ConfigurationError as exc:
        if not ddl and _columns_missing(exc):
            try:
                asyncio.run(_layout(settings))
            except LayoutError as layout:
                print(f"usvc-oracle: {layout}", file=sys.stderr)
                return 1
            except (UsvcError, oracledb.Error):
                pass  # the first error says enough
        print(f"usvc-oracle: {exc}", file=sys.stderr)
        return 2
    except UsvcError as exc:
        print(f"usvc-oracle: {exc}", file=sys.stderr)
        return 2
    except oracledb.Error as exc:
        failure = classify(exc)
        print(f"usvc-oracle: {failure.code}: {failure.message}", file=sys.stderr)
        hint = failure.hint(
            ddl=ddl, table=str(settings.table), dsn=settings.ORACLE_DSN, user=settings.ORACLE_USER
        )
        if hint:
            print(f"usvc-oracle: {hint}", file=sys.stderr)
        return 1 if failure.kind is FailureKind.PERMANENT else EXIT_UNAVAILABLE


def _columns_missing(exc: BaseException) -> bool:
    """Whether ``open()`` failed on a column the table lacks (ORA-00904)."""
    cause = exc.__cause__
    failure = getattr(cause, "failure", None)
    return getattr(failure, "code", None) == "ORA-00904"
