"""Breaks the queue on purpose, to prove that the suite's checks notice a lost write:

* ``POWERLOSS_SKIP_FSYNC=1``: the WAL flush behind ``durability=full`` does nothing;
* ``POWERLOSS_SKIP_FSYNC_ONE_IN=N``: each WAL flush is skipped with probability 1/N (the
  subtle bug: most acknowledgements are still safe).
"""

import os
import random

from usvc_sqlite.connection import SqliteConnection

if os.environ.get("POWERLOSS_SKIP_FSYNC") == "1":
    SqliteConnection._sync_wal = lambda self: None  # type: ignore[method-assign]

_ONE_IN = int(os.environ.get("POWERLOSS_SKIP_FSYNC_ONE_IN", "0"))
if _ONE_IN:
    _real_sync = SqliteConnection._sync_wal
    _rng = random.Random()

    def _sometimes(self: SqliteConnection) -> None:
        if _rng.randrange(_ONE_IN) != 0:
            _real_sync(self)

    SqliteConnection._sync_wal = _sometimes  # type: ignore[method-assign]
