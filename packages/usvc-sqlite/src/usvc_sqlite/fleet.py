"""The SQLite queue's fleet (``FleetAdmin``): worker records, gone workers' leases, paused
actions. Plain blocking functions on a ``sqlite3.Connection``, like ``statements``; the
writes run inside the caller's transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from usvc_core.adapter_support import GONE_AFTER_HEARTBEATS
from usvc_core.ports import ReclaimResult, WorkerRecord

from usvc_sqlite.schema import NOW, PAUSED_TABLE, TABLE, WORKERS_TABLE

__all__ = [
    "forget_gone",
    "has_gone_owner",
    "heartbeat",
    "list_workers",
    "pause",
    "paused",
    "paused_limits",
    "reclaim_gone",
    "remove",
    "resume",
]

_GONE = f"(last_seen_at + {GONE_AFTER_HEARTBEATS} * heartbeat_seconds < {NOW})"
_GONE_OWNERS = f"SELECT worker_id FROM {WORKERS_TABLE} WHERE microservice = ? AND {_GONE}"
_LEASED = "status IN ('Assigned', 'Processing')"

_HEARTBEAT = f"""
INSERT INTO {WORKERS_TABLE} (microservice, worker_id, host, pid, version, started_at,
                            heartbeat_seconds, actions, concurrency, running, last_seen_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW})
ON CONFLICT (microservice, worker_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, version = excluded.version,
    started_at = excluded.started_at, heartbeat_seconds = excluded.heartbeat_seconds,
    actions = excluded.actions, concurrency = excluded.concurrency,
    running = excluded.running, last_seen_at = excluded.last_seen_at
"""
_WORKERS = f"""
SELECT worker_id, microservice, host, pid, version, started_at, heartbeat_seconds, actions,
       concurrency, running, last_seen_at, {_GONE}
FROM {WORKERS_TABLE} WHERE microservice = ? ORDER BY started_at, worker_id
"""
# Read first, on the reader: most calls find nothing and take no write lock.
_ANY_GONE_OWNER = f"""
SELECT 1 FROM {TABLE}
WHERE microservice = ? AND {_LEASED} AND lease_owner IN ({_GONE_OWNERS}) LIMIT 1
"""
# Their leases end now: what follows is exactly the reclaim of an expired lease.
_END_GONE_LEASES = f"""
UPDATE {TABLE} SET lease_expires_at = {NOW} - 1.0
WHERE microservice = ? AND {_LEASED} AND lease_owner IN ({_GONE_OWNERS})
"""
_FORGET = f"""
DELETE FROM {WORKERS_TABLE}
WHERE microservice = ? AND {_GONE} AND last_seen_at < {NOW} - ?
"""
_PAUSE = f"""
INSERT INTO {PAUSED_TABLE} (microservice, action, paused_at) VALUES (?, ?, {NOW})
ON CONFLICT (microservice, action) DO NOTHING
"""
_PAUSED = f"SELECT action, paused_at FROM {PAUSED_TABLE} WHERE microservice = ? ORDER BY action"
_PAUSED_NAMES = f"SELECT action FROM {PAUSED_TABLE} WHERE microservice = ?"


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def heartbeat(conn: sqlite3.Connection, record: WorkerRecord) -> None:
    conn.execute(
        _HEARTBEAT,
        (
            record.microservice,
            record.worker_id,
            record.host,
            record.pid,
            record.version,
            record.started_at.timestamp(),
            record.heartbeat_seconds,
            json.dumps(list(record.actions)),
            record.concurrency,
            record.running,
        ),
    )


def remove(conn: sqlite3.Connection, microservice: str, worker_id: str) -> None:
    conn.execute(
        f"DELETE FROM {WORKERS_TABLE} WHERE microservice = ? AND worker_id = ?",
        (microservice, worker_id),
    )


def list_workers(conn: sqlite3.Connection, microservice: str) -> list[WorkerRecord]:
    return [
        WorkerRecord(
            worker_id=row[0],
            microservice=row[1],
            host=row[2],
            pid=row[3],
            version=row[4],
            started_at=_time(row[5]),
            heartbeat_seconds=row[6],
            actions=tuple(json.loads(row[7])),
            concurrency=row[8],
            running=row[9],
            last_seen_at=_time(row[10]),
            gone=bool(row[11]),
        )
        for row in conn.execute(_WORKERS, (microservice,))
    ]


def has_gone_owner(conn: sqlite3.Connection, microservice: str) -> bool:
    """Whether some job of the service is leased by a gone worker."""
    return conn.execute(_ANY_GONE_OWNER, (microservice, microservice)).fetchone() is not None


def reclaim_gone(
    conn: sqlite3.Connection,
    microservice: str,
    reclaim: Callable[[sqlite3.Connection, str], ReclaimResult],
) -> ReclaimResult:
    """End the leases of the service's jobs held by gone workers, then ``reclaim`` (the
    queue's reclaim of expired leases) in the same transaction: the same rules apply."""
    conn.execute(_END_GONE_LEASES, (microservice, microservice))
    return reclaim(conn, microservice)


def forget_gone(conn: sqlite3.Connection, microservice: str, older_than: float) -> int:
    return conn.execute(_FORGET, (microservice, older_than)).rowcount


def pause(conn: sqlite3.Connection, microservice: str, action: str) -> bool:
    return conn.execute(_PAUSE, (microservice, action)).rowcount == 1


def resume(conn: sqlite3.Connection, microservice: str, action: str) -> bool:
    deleted = conn.execute(
        f"DELETE FROM {PAUSED_TABLE} WHERE microservice = ? AND action = ?",
        (microservice, action),
    )
    return deleted.rowcount == 1


def paused(conn: sqlite3.Connection, microservice: str) -> dict[str, datetime]:
    return {action: _time(at) for action, at in conn.execute(_PAUSED, (microservice,))}


def paused_limits(conn: sqlite3.Connection, microservice: str) -> dict[str, int]:
    """The service's paused actions as claim limits of 0 (read inside the claim's
    transaction, so a pause is seen by the next claim of every process)."""
    return {row[0]: 0 for row in conn.execute(_PAUSED_NAMES, (microservice,))}
