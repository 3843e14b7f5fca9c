"""Benchmark (not a test): what each index of the jobs table costs the hot statements, in
counts that do not move with the machine's load.

    uv run python bench/sqlite_index_cost.py                      # the file as it is
    uv run python bench/sqlite_index_cost.py --drop finished --drop ready_created,ready_action

The bare loop of ``bench/sqlite_drain.py`` (claim-and-start of 10, their completions and
the count of finished jobs, each transaction with the adapter's ``synchronous`` level) runs
under callgrind on a copy of one filled file per variant, each variant with some indexes
dropped (``--drop`` names without the ``usvc_jobs_`` prefix, comma-separated; the first
variant drops none). Per job it prints the instructions run inside ``sqlite3_step`` (only
SQLite's work, none of the loop's Python) and the WAL pages written (auto-checkpoint off,
so the WAL's size counts every page a commit wrote). Needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlite_drain

__all__ = ["main"]


def _loop(path: Path) -> None:
    """The floor's loop on ``path``; prints the jobs done and the WAL pages per job."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    done = 0
    while True:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            sqlite_drain.CLAIM_STARTED, ("floor", 30.0, sqlite_drain.SERVICE, sqlite_drain.BATCH)
        ).fetchall()
        conn.execute("COMMIT")
        if not rows:
            break
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        for row in rows:
            conn.execute(sqlite_drain.COMPLETE, ("null", 0.0, row[0], row[12]))
        if sqlite_drain.COUNT_FINISHED is not None:
            ids = ", ".join("?" * len(rows))
            conn.execute(
                sqlite_drain.COUNT_FINISHED.replace("<ids>", ids),
                ("Completed", *(row[0] for row in rows)),
            )
        conn.execute("COMMIT")
        done += len(rows)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    frames = (os.path.getsize(f"{path}-wal") - 32) / (page + 24)
    print(f"DONE {done} {frames / done}", flush=True)
    os._exit(0)  # no close: closing would checkpoint and reset the WAL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--drop", action="append", default=[], help="indexes to drop")
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loop:
        _loop(Path(args.loop))
    variants = [[], *([d for d in spec.split(",") if d] for spec in args.drop)]
    with tempfile.TemporaryDirectory(prefix="usvc-bench-index-cost-") as tmp:
        base = Path(tmp) / "base.db"
        asyncio.run(sqlite_drain._fill(base, args.jobs, "full"))
        with sqlite3.connect(base, isolation_level=None) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        for n, drops in enumerate(variants):
            path = Path(tmp) / f"v{n}.db"
            shutil.copy(base, path)
            with sqlite3.connect(path, isolation_level=None) as conn:
                for name in drops:
                    conn.execute(f"DROP INDEX usvc_jobs_{name}")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            run = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--toggle-collect=sqlite3_step",
                    f"--callgrind-out-file={tmp}/v{n}.cg",
                    sys.executable,
                    __file__,
                    "--loop",
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            collected = re.search(r"Collected : (\d+)", run.stderr)
            done = [line.split() for line in run.stdout.splitlines() if line.startswith("DONE")]
            if collected is None or not done:
                raise RuntimeError(f"no counts from callgrind: {run.stderr[-500:]}")
            jobs, pages = int(done[0][1]), float(done[0][2])
            label = ", ".join(drops) or "(none dropped)"
            print(
                f"{label:50} {int(collected.group(1)) / jobs / 1000:8.1f}k instructions "
                f"{pages:6.2f} WAL pages per job"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
