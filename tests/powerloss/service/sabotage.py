"""Breaks the queue on purpose when ``POWERLOSS_SKIP_FSYNC=1``: the WAL flush behind
``durability=full`` does nothing, so acknowledged writes can be lost at a power cut. The
suite runs this once to prove that its checks notice such a loss."""

import os

from usvc_sqlite.connection import SqliteConnection

if os.environ.get("POWERLOSS_SKIP_FSYNC") == "1":
    SqliteConnection._sync_wal = lambda self: None  # type: ignore[method-assign]
