"""The SQLite queue's schema, versioned with ``PRAGMA user_version``.

Each entry of :data:`MIGRATIONS` moves a file from one version to the next; a new file runs
them all. Opening a file applies the steps it lacks, inside one ``BEGIN IMMEDIATE``
transaction, so several processes opening the same file at once migrate it exactly once.
A file written by a newer version of this package is refused: this code cannot know what
the newer columns mean.

Times are REAL seconds since the Unix epoch, always computed by SQLite itself
(:data:`NOW`), so every process on the machine compares leases on one clock.
"""

from __future__ import annotations

import sqlite3

from usvc_core.errors import ConfigurationError

__all__ = [
    "COUNTS",
    "MIGRATIONS",
    "NOW",
    "PAUSED_TABLE",
    "SCHEMA_VERSION",
    "SESSIONS",
    "TABLE",
    "WORKERS_TABLE",
    "SqliteFileError",
    "prepare",
]

TABLE = "usvc_jobs"
#: The fleet (``FleetAdmin``): one row per worker process, one per paused action.
WORKERS_TABLE = "usvc_workers"
PAUSED_TABLE = "usvc_paused_actions"
#: Admin sessions ended by a logout, until they would have expired (schema 7).
SESSIONS = "usvc_revoked_sessions"
#: Finished jobs by service, action and status (schema 7): kept by the statements that
#: finish jobs or take them back (schema 8), and by triggers for rows inserted or deleted.
COUNTS = "usvc_job_counts"

#: SQLite's clock, in Unix seconds with millisecond resolution (``unixepoch('subsec')``
#: needs SQLite 3.42; this works from 3.35, the first version with RETURNING).
NOW = "((julianday('now') - 2440587.5) * 86400.0)"

_UNFINISHED = "('Ready', 'Assigned', 'Processing')"
_FINISHED = "('Completed', 'Failed')"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the jobs table, the claim index, the lease index, idempotency keys.
    (
        f"""
        CREATE TABLE {TABLE} (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            microservice     TEXT    NOT NULL,
            action           TEXT    NOT NULL DEFAULT '',
            payload          TEXT    NOT NULL,
            status           TEXT    NOT NULL DEFAULT 'Ready' CHECK (status IN
                                 ('Ready', 'Assigned', 'Processing', 'Completed', 'Failed')),
            priority         INTEGER NOT NULL DEFAULT 0,
            run_at           REAL    NOT NULL DEFAULT ({NOW}),
            attempts         INTEGER NOT NULL DEFAULT 0,
            max_attempts     INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
            token            TEXT,
            idempotency_key  TEXT,
            lease_owner      TEXT,
            lease_token      TEXT,
            lease_expires_at REAL,
            results          TEXT,
            error_code       TEXT,
            error_message    TEXT,
            runtime_ms       REAL,
            created_at       REAL    NOT NULL DEFAULT ({NOW}),
            updated_at       REAL    NOT NULL DEFAULT ({NOW}),
            started_at       REAL,
            finished_at      REAL
        )
        """,
        f"""
        CREATE INDEX {TABLE}_ready ON {TABLE} (microservice, priority DESC, run_at, id)
        WHERE status = 'Ready'
        """,
        f"""
        CREATE INDEX {TABLE}_leased ON {TABLE} (microservice, lease_expires_at)
        WHERE status IN ('Assigned', 'Processing')
        """,
        f"""
        CREATE UNIQUE INDEX {TABLE}_idempotency ON {TABLE} (microservice, idempotency_key)
        WHERE idempotency_key IS NOT NULL AND status IN {_UNFINISHED}
        """,
    ),
    # 2: finished jobs indexed, so that purge and the counts of stats stay fast on a large
    # file. Partial, like the others: a job enters it once, when it finishes.
    (
        f"""
        CREATE INDEX {TABLE}_finished ON {TABLE} (microservice, status, finished_at)
        WHERE status IN ('Completed', 'Failed')
        """,
    ),
    # 3: unique keys that hold across finished jobs (scheduled slots), and an operator's
    # request to stop a Processing job (seen by its worker at the next lease renewal).
    (
        f"ALTER TABLE {TABLE} ADD COLUMN unique_key TEXT",
        f"ALTER TABLE {TABLE} ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        f"""
        CREATE UNIQUE INDEX {TABLE}_unique ON {TABLE} (microservice, unique_key)
        WHERE unique_key IS NOT NULL
        """,
    ),
    # 4: Ready jobs by action, so that a claim under per-action limits (max_running) reads
    # each action's best jobs with one seek, however many jobs of a saturated action wait.
    (
        f"""
        CREATE INDEX {TABLE}_ready_action ON {TABLE} (microservice, action, priority DESC, run_at)
        WHERE status = 'Ready'
        """,
    ),
    # 5: what operators read. Jobs by creation time for the newest-first pages of list_jobs
    # (both columns never change: a job enters it once, at enqueue); finished jobs by
    # action and status, so that activity counts them in index order, with no sort.
    (
        f"CREATE INDEX {TABLE}_created ON {TABLE} (created_at, microservice)",
        f"""
        CREATE INDEX {TABLE}_failed ON {TABLE} (created_at, microservice)
        WHERE status = 'Failed'
        """,
        f"""
        CREATE INDEX {TABLE}_finished_action ON {TABLE} (microservice, action, status)
        WHERE status IN ('Completed', 'Failed')
        """,
    ),
    # 6 (the fleet): worker processes with their heartbeats, and paused actions. Small
    # tables, read by primary key: a claim looks up its service's paused actions.
    (
        f"""
        CREATE TABLE {WORKERS_TABLE} (
            microservice      TEXT    NOT NULL,
            worker_id         TEXT    NOT NULL,
            host              TEXT    NOT NULL,
            pid               INTEGER NOT NULL,
            version           TEXT    NOT NULL,
            started_at        REAL    NOT NULL,
            heartbeat_seconds REAL    NOT NULL CHECK (heartbeat_seconds > 0),
            actions           TEXT    NOT NULL,
            concurrency       INTEGER NOT NULL,
            running           INTEGER NOT NULL,
            last_seen_at      REAL    NOT NULL,
            PRIMARY KEY (microservice, worker_id)
        ) WITHOUT ROWID
        """,
        f"""
        CREATE TABLE {PAUSED_TABLE} (
            microservice TEXT NOT NULL,
            action       TEXT NOT NULL,
            paused_at    REAL NOT NULL,
            PRIMARY KEY (microservice, action)
        ) WITHOUT ROWID
        """,
    ),
    # --- store (issues 19 items 4 and 9, 21 items 1, 2, 5 and 10, 22 item 3) ---------------
    # 7: attempt history (closed attempts as a JSON array; the current attempt is the row's
    # own columns), the never-started rescue (a claim_and_start whose claimer never
    # confirmed, given back once), admin session revocations, and indexes for what
    # operators read on a large file: pages by status, action and error code in creation
    # order, due Ready jobs by when they became due, any job by idempotency key. The index
    # of Failed jobs by creation time is replaced by the one by status.
    (
        f"ALTER TABLE {TABLE} ADD COLUMN attempt_log TEXT",
        f"ALTER TABLE {TABLE} ADD COLUMN attempt_no INTEGER NOT NULL DEFAULT 0",
        f"ALTER TABLE {TABLE} ADD COLUMN start_confirmed INTEGER NOT NULL DEFAULT 1",
        f"ALTER TABLE {TABLE} ADD COLUMN attempt_given_back INTEGER NOT NULL DEFAULT 0",
        f"""
        CREATE TABLE {SESSIONS} (
            session_id TEXT PRIMARY KEY,
            until      REAL NOT NULL
        ) WITHOUT ROWID
        """,
        f"CREATE INDEX {SESSIONS}_until ON {SESSIONS} (until)",
        f"DROP INDEX {TABLE}_failed",
        # Ready, Completed and Failed jobs by creation time, one partial index each (a query
        # names its status as a literal: SQLite then proves the index usable): a claim
        # takes a job out of one, its finish puts it into another, one index write each.
        # Leased jobs (few) are listed from the index of leases.
        *(
            f"""
            CREATE INDEX {TABLE}_{status.lower()}_created ON {TABLE} (microservice, created_at)
            WHERE status = '{status}'
            """
            for status in ("Ready", "Completed", "Failed")
        ),
        f"CREATE INDEX {TABLE}_action_created ON {TABLE} (microservice, action, created_at)",
        f"""
        CREATE INDEX {TABLE}_error_created ON {TABLE} (microservice, error_code, created_at)
        WHERE error_code IS NOT NULL
        """,
        f"""
        CREATE INDEX {TABLE}_ready_due
        ON {TABLE} (microservice, status, action, run_at, created_at)
        WHERE status = 'Ready'
        """,
        f"""
        CREATE INDEX {TABLE}_idempotency_all ON {TABLE} (microservice, idempotency_key)
        WHERE idempotency_key IS NOT NULL
        """,
        # Finished jobs by service, action and status, kept by triggers: stats and the
        # overview read a few rows instead of counting a million index entries. Only a
        # job's finish (and purge) pays for it, with one small write in its transaction;
        # claims do not (unfinished jobs are few enough to count on their indexes).
        f"""
        CREATE TABLE {COUNTS} (
            microservice TEXT    NOT NULL,
            action       TEXT    NOT NULL,
            status       TEXT    NOT NULL,
            jobs         INTEGER NOT NULL,
            PRIMARY KEY (microservice, action, status)
        ) WITHOUT ROWID
        """,
        f"""
        INSERT INTO {COUNTS} (microservice, action, status, jobs)
        SELECT microservice, action, status, count(*) FROM {TABLE}
        WHERE status IN {_FINISHED} GROUP BY microservice, action, status
        """,
        f"""
        CREATE TRIGGER {TABLE}_count_insert AFTER INSERT ON {TABLE}
        WHEN new.status IN {_FINISHED}
        BEGIN
            INSERT INTO {COUNTS} (microservice, action, status, jobs)
            VALUES (new.microservice, new.action, new.status, 1)
            ON CONFLICT DO UPDATE SET jobs = jobs + 1;
        END
        """,
        f"""
        CREATE TRIGGER {TABLE}_count_update AFTER UPDATE OF status, action, microservice
        ON {TABLE}
        WHEN (old.status IN {_FINISHED} OR new.status IN {_FINISHED})
            AND (old.status IS NOT new.status OR old.action IS NOT new.action
                OR old.microservice IS NOT new.microservice)
        BEGIN
            UPDATE {COUNTS} SET jobs = jobs - 1 WHERE old.status IN {_FINISHED}
                AND microservice = old.microservice AND action = old.action
                AND status = old.status;
            INSERT INTO {COUNTS} (microservice, action, status, jobs)
            SELECT new.microservice, new.action, new.status, 1 WHERE new.status IN {_FINISHED}
            ON CONFLICT DO UPDATE SET jobs = jobs + 1;
        END
        """,
        f"""
        CREATE TRIGGER {TABLE}_count_delete AFTER DELETE ON {TABLE}
        WHEN old.status IN {_FINISHED}
        BEGIN
            UPDATE {COUNTS} SET jobs = jobs - 1 WHERE microservice = old.microservice
                AND action = old.action AND status = old.status;
        END
        """,
    ),
    # --- end store -------------------------------------------------------------------------
    # 8: finishes counted by the statements that finish jobs, once per commit group (one
    # upsert for a batch of completions, in its transaction), instead of by a trigger run
    # for every updated row (claims included): that trigger cost a completion about a
    # third of its time. The counts stay exact: the update trigger goes in the same
    # transaction as this step, and rows inserted or deleted by any program are still
    # counted by the other two triggers.
    (f"DROP TRIGGER {TABLE}_count_update",),
    # 9: fewer indexes for a claim and a finish to write (each costs the pair about 5 % of
    # its CPU and a tenth of a WAL page per job). The index of finished jobs by action and
    # status has had no reader since the table of counts (schema 7). Ready jobs by action
    # were in two indexes, one in claim order (limited claims), one in run-at order
    # (stats, activity): one index in claim order serves both, read per action and
    # priority in run-at order (see ready_by_action). Status is a column so that SQLite
    # 3.40 sees the index as covering (it does not infer it from the partial WHERE).
    (
        f"DROP INDEX {TABLE}_finished_action",
        f"DROP INDEX {TABLE}_ready_due",
        f"DROP INDEX {TABLE}_ready_action",
        f"""
        CREATE INDEX {TABLE}_ready_action
        ON {TABLE} (microservice, status, action, priority DESC, run_at, id, created_at)
        WHERE status = 'Ready'
        """,
    ),
)

#: The version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)


class SqliteFileError(ConfigurationError):
    """The SQLite file cannot serve as this version's job queue: missing directory, not a
    database, a foreign table, no WAL, or a newer schema (the message says which)."""


def prepare(conn: sqlite3.Connection, where: str, *, upto: int = SCHEMA_VERSION) -> int:
    """Bring the file's schema to version ``upto``; return the version it had.

    ``conn`` must be in autocommit mode (``isolation_level=None``). ``upto`` lower than the
    current version exists for tests that need a file written by an older version.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise SqliteFileError(f"{where} is not an SQLite database file") from exc
        raise
    try:
        found = _version(conn, where)
        for step in MIGRATIONS[found:upto]:
            for statement in step:
                conn.execute(statement)
        if upto > found:
            conn.execute(f"PRAGMA user_version = {int(upto)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _version(conn: sqlite3.Connection, where: str) -> int:
    """The file's schema version, or an error when this code cannot use the file."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise SqliteFileError(
            f"{where} holds job-queue schema version {found}, written by a newer "
            f"usvc-testing; this one understands versions up to {SCHEMA_VERSION}. "
            "Upgrade usvc-testing in this service, or point QUEUE_URL at another file."
        )
    if found == 0 and _has_table(conn):
        raise SqliteFileError(
            f"{where} has a {TABLE} table but no schema version (PRAGMA user_version = 0); "
            "it was not created by usvc-testing. Point QUEUE_URL at another file."
        )
    return found


def _has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone()
    return row is not None
