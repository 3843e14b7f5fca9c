"""The PostgreSQL queue's table and indexes, created idempotently.

Every index is partial on the statuses its readers ask for, so a job enters the Ready
index at enqueue, leaves it at claim, and the finished indexes once. Lease renewals change
no indexed column (``lease_expires_at`` is not indexed: reclaim reads the few owned jobs of
a service by the owned index), and ``fillfactor = 80`` leaves room on each page, so that
renewals stay HOT updates. Autovacuum runs at 2 % dead rows instead of 20 %: a queue table
churns all day.
"""

from __future__ import annotations

from usvc_postgres.fleet import fleet_ddl

__all__ = ["EXPECTED_INDEXES", "SCHEMA_LOCK", "ddl"]

_UNFINISHED = "('Ready', 'Assigned', 'Processing')"
_OWNED = "('Assigned', 'Processing')"

#: Advisory lock key (namespace) taken while applying the DDL, so processes opening one
#: new database at once create the table exactly once.
SCHEMA_LOCK = 0x75737663  # "usvc"


def ddl(table: str) -> list[str]:
    """The statements that create ``table``, its indexes and the fleet's two tables
    (``<table>_workers``, ``<table>_paused``), each ``IF NOT EXISTS``."""
    t = table
    return [
        f"""CREATE TABLE IF NOT EXISTS {t} (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    microservice     text        NOT NULL,
    action           text        NOT NULL DEFAULT '',
    payload          text        NOT NULL,
    status           text        NOT NULL DEFAULT 'Ready' CHECK (status IN
                         ('Ready', 'Assigned', 'Processing', 'Completed', 'Failed')),
    priority         integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    token            text,
    idempotency_key  text,
    unique_key       text,
    lease_owner      text,
    lease_token      text,
    lease_expires_at timestamptz,
    cancel_requested boolean     NOT NULL DEFAULT false,
    results          text,
    error_code       text,
    error_message    text,
    runtime_ms       double precision,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02)""",
        # The claim: a service's due Ready jobs, best first.
        f"""CREATE INDEX IF NOT EXISTS {t}_ready ON {t}
    (microservice, priority DESC, run_at, id) WHERE status = 'Ready'""",
        # Claims under max_running: each action's best Ready jobs with one seek.
        f"""CREATE INDEX IF NOT EXISTS {t}_ready_action ON {t}
    (microservice, action, priority DESC, run_at, id) WHERE status = 'Ready'""",
        # Reclaim of expired leases, and the running count by action of max_running.
        f"""CREATE INDEX IF NOT EXISTS {t}_owned ON {t}
    (microservice, action) WHERE status IN {_OWNED}""",
        f"""CREATE UNIQUE INDEX IF NOT EXISTS {t}_idempotency ON {t}
    (microservice, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN {_UNFINISHED}""",
        f"""CREATE UNIQUE INDEX IF NOT EXISTS {t}_unique ON {t}
    (microservice, unique_key) WHERE unique_key IS NOT NULL""",
        # Purge, counts and per-minute activity of finished jobs.
        f"""CREATE INDEX IF NOT EXISTS {t}_finished ON {t}
    (microservice, finished_at) WHERE status IN ('Completed', 'Failed')""",
        # Operators' newest-first pages (both columns never change after enqueue).
        f"""CREATE INDEX IF NOT EXISTS {t}_created ON {t}
    (microservice, created_at DESC, id DESC)""",
        f"""CREATE INDEX IF NOT EXISTS {t}_failed ON {t}
    (microservice, created_at DESC, id DESC) WHERE status = 'Failed'""",
        # The fleet: worker records (heartbeats) and paused actions.
        *fleet_ddl(t),
        # Attempt history (closed attempts, the last N, as JSON; the current attempt is the
        # row's own columns) and the never-started rescue (a claim_and_start whose claimer
        # never confirmed the start gets its attempt back, once per job).
        f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS attempt_no integer NOT NULL DEFAULT 0",
        f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS attempt_log jsonb",
        f"""ALTER TABLE {t} ADD COLUMN IF NOT EXISTS start_confirmed boolean
    NOT NULL DEFAULT true""",
        f"""ALTER TABLE {t} ADD COLUMN IF NOT EXISTS attempt_given_back boolean
    NOT NULL DEFAULT false""",
        # --- store (issues 19.4, 21.5): logged-out admin sessions; any job by its key
        f"""CREATE TABLE IF NOT EXISTS {t}_revoked_sessions (
    session_id text PRIMARY KEY,
    until      timestamptz NOT NULL)""",
        f"""CREATE INDEX IF NOT EXISTS {t}_revoked_sessions_until
    ON {t}_revoked_sessions (until)""",
        f"""CREATE INDEX IF NOT EXISTS {t}_idempotency_all ON {t}
    (microservice, idempotency_key) WHERE idempotency_key IS NOT NULL""",
        # The statistics sample (every worker, every 15 s) at any depth: the longest-waiting
        # due job with one seek (a job is due from max(created_at, run_at)). Without it that
        # read every Ready row of the service (0.15 s at 500,000 Ready jobs).
        f"""CREATE INDEX IF NOT EXISTS {t}_due ON {t}
    (microservice, (greatest(created_at, run_at))) WHERE status = 'Ready'""",
    ]


#: Index suffixes ``check`` expects beside the primary key.
EXPECTED_INDEXES = (
    "ready",
    "ready_action",
    "owned",
    "idempotency",
    "unique",
    "finished",
    "created",
    "failed",
    "due",
)
