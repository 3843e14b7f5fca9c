"""Command line: print the DDL, apply it, or check a deployment.

    python -m usvc_postgres ddl   [--table NAME]   # print the CREATE statements (psql style)
    python -m usvc_postgres apply [--table NAME]   # create what is missing; safe to re-run
    python -m usvc_postgres check [--table NAME]   # connect and verify, as a worker would

``apply`` and ``check`` connect with the ``POSTGRES_*`` variables (environment or ``.env``)
or ``--url postgresql://user@host:port/db`` (the password from ``POSTGRES_PASSWORD``). Run
``apply`` with a role allowed to create tables, then start workers with
``POSTGRES_CREATE_SCHEMA=false`` if their role may not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import asyncpg
from usvc_core.errors import UsvcError

from usvc_postgres.connection import Connections
from usvc_postgres.schema import EXPECTED_INDEXES, SCHEMA_LOCK, ddl
from usvc_postgres.settings import PostgresSettings, parse_postgres_url
from usvc_postgres.statements import COLUMNS

__all__ = ["apply_schema", "check_schema", "main"]


async def apply_schema(settings: PostgresSettings, out: TextIO) -> None:
    """Create the table and indexes that are missing (under the schema advisory lock)."""
    db = Connections(settings)

    async def apply(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", SCHEMA_LOCK)
            for statement in ddl(settings.POSTGRES_TABLE):
                await conn.execute(statement)
                print(f"applied: {statement.splitlines()[0].rstrip(' (')}", file=out)

    try:
        await db.run("apply", apply)
    finally:
        await db.close()


async def check_schema(settings: PostgresSettings, out: TextIO) -> list[str]:
    """What is missing from the deployment (empty: ready for workers)."""
    db = Connections(settings)
    table = settings.POSTGRES_TABLE

    async def check(conn: asyncpg.Connection) -> list[str]:
        problems: list[str] = []
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            return [f"table {table} does not exist: run `python -m usvc_postgres apply`"]
        columns = {
            r[0]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                "AND attnum > 0 AND NOT attisdropped",
                table,
            )
        }
        wanted = [c.strip() for c in COLUMNS.split(",")]
        problems += [f"column {table}.{c} is missing" for c in wanted if c not in columns]
        indexes = {
            r[0]
            for r in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = $1", table
            )
        }
        for extra in ("workers", "paused"):
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{table}_{extra}"):
                problems.append(
                    f"table {table}_{extra} is missing: run `python -m usvc_postgres apply`"
                )
        problems += [
            f"index {table}_{suffix} is missing: run `python -m usvc_postgres apply`"
            for suffix in EXPECTED_INDEXES
            if f"{table}_{suffix}" not in indexes
        ]
        return problems

    try:
        problems = await db.run("check", check)
    finally:
        await db.close()
    for problem in problems:
        print(f"problem: {problem}", file=out)
    if not problems:
        print(f"ok: {settings.where()} is ready for workers", file=out)
    return problems


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="python -m usvc_postgres", description="The PostgreSQL queue's schema."
    )
    parser.add_argument("command", choices=("ddl", "apply", "check"))
    parser.add_argument("--table", help="the jobs table (default: POSTGRES_TABLE or usvc_jobs)")
    parser.add_argument("--url", help="postgresql://user@host:port/db (default: POSTGRES_*)")
    args = parser.parse_args(argv)
    try:
        overrides: dict[str, Any] = {}
        if args.url:
            overrides.update(parse_postgres_url(args.url))
        if args.table:
            overrides["POSTGRES_TABLE"] = args.table
        settings = PostgresSettings(**overrides)
        if args.command == "ddl":
            for statement in ddl(settings.POSTGRES_TABLE):
                print(f"{statement};\n", file=out)
            return 0
        if args.command == "apply":
            asyncio.run(apply_schema(settings, out))
            return 0
        return 1 if asyncio.run(check_schema(settings, out)) else 0
    except (UsvcError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
