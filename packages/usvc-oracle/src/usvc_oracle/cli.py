"""Command line: print the DDL, apply it idempotently, or check a deployment.

    python -m usvc_oracle ddl   [--table NAME]   # print CREATE statements (SQL*Plus style)
    python -m usvc_oracle apply [--table NAME]   # create what is missing; safe to re-run
    python -m usvc_oracle check [--table NAME]   # connect and verify the table, like a worker

``apply`` and ``check`` connect with ORACLE_DSN, ORACLE_USER and ORACLE_PASSWORD (environment
or ``.env``). Run ``apply`` with a user allowed to create tables, before starting workers:
DDL commits implicitly, so workers never run it themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import oracledb
from usvc_core.errors import UsvcError

from usvc_oracle.driver import ConnectionLike
from usvc_oracle.failures import classify
from usvc_oracle.queue import OracleQueue
from usvc_oracle.settings import OracleSettings, load_oracle_settings
from usvc_oracle.sql import DDL_IGNORED_ERRORS, ddl_statements

__all__ = ["apply_ddl", "main"]


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
            await cur.execute(sql)
        except oracledb.DatabaseError as exc:
            err = exc.args[0] if exc.args else None
            if int(getattr(err, "code", 0) or 0) in DDL_IGNORED_ERRORS:
                print(f"exists:  {_first_line(sql)}", file=out)
                continue
            raise
        finally:
            cur.close()
        created += 1
        print(f"created: {_first_line(sql)}", file=out)
    return created


async def _apply(settings: OracleSettings, out: TextIO) -> int:
    settings.require_credentials()
    conn: Any = await oracledb.connect_async(
        user=settings.ORACLE_USER,
        password=settings.ORACLE_PASSWORD.get_secret_value(),
        dsn=settings.ORACLE_DSN,
        tcp_connect_timeout=settings.ORACLE_CONNECT_TIMEOUT_SECONDS,
    )
    try:
        created = await apply_ddl(conn, ddl_statements(settings.table), out)
    finally:
        await conn.close()
    print(f"{settings.table}: {created} object(s) created", file=out)
    return 0


async def _check(settings: OracleSettings, out: TextIO) -> int:
    queue = OracleQueue(settings.require_credentials())
    await queue.open()
    await queue.close()
    print(f"{settings.table}: reachable, table and columns present", file=out)
    return 0


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
            return 0
    except UsvcError as exc:
        print(f"usvc-oracle: {exc}", file=sys.stderr)
        return 2
    runner = _apply if args.command == "apply" else _check
    try:
        return asyncio.run(runner(settings, out))
    except UsvcError as exc:
        print(f"usvc-oracle: {exc}", file=sys.stderr)
        return 2
    except oracledb.Error as exc:
        failure = classify(exc)
        print(f"usvc-oracle: {failure.code}: {failure.message}", file=sys.stderr)
        hint = failure.hint(table=str(settings.table), dsn=settings.ORACLE_DSN)
        if hint:
            print(f"usvc-oracle: {hint}", file=sys.stderr)
        return 1
