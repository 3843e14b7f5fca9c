"""The PostgreSQL queue's fleet (``FleetAdmin``): worker records, the leases of gone
workers, paused actions; two small tables beside the jobs table, on the server's clock."""

from __future__ import annotations

from dataclasses import dataclass

from usvc_core.adapter_support import GONE_AFTER_HEARTBEATS

__all__ = ["FleetStatements", "fleet_ddl"]

_LEASED = "status IN ('Assigned', 'Processing')"


def fleet_ddl(table: str) -> list[str]:
    """The worker records and paused actions of the queue on ``table``."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {table}_workers (
    microservice      text             NOT NULL,
    worker_id         text             NOT NULL,
    host              text             NOT NULL,
    pid               integer          NOT NULL,
    version           text             NOT NULL,
    started_at        timestamptz      NOT NULL,
    heartbeat_seconds double precision NOT NULL,
    actions           text[]           NOT NULL,
    concurrency       integer          NOT NULL,
    running           integer          NOT NULL,
    last_seen_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (microservice, worker_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS {table}_paused (
    microservice text        NOT NULL,
    action       text        NOT NULL,
    paused_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (microservice, action)
)""",
    ]


@dataclass(frozen=True, slots=True)
class FleetStatements:
    table: str

    @property
    def _gone(self) -> str:
        return (
            f"(last_seen_at + {GONE_AFTER_HEARTBEATS} * heartbeat_seconds "
            "* interval '1 second' < now())"
        )

    @property
    def heartbeat(self) -> str:
        return f"""INSERT INTO {self.table}_workers (microservice, worker_id, host, pid, version,
    started_at, heartbeat_seconds, actions, concurrency, running, last_seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
ON CONFLICT (microservice, worker_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, version = excluded.version,
    started_at = excluded.started_at, heartbeat_seconds = excluded.heartbeat_seconds,
    actions = excluded.actions, concurrency = excluded.concurrency,
    running = excluded.running, last_seen_at = excluded.last_seen_at"""

    @property
    def remove(self) -> str:
        return f"DELETE FROM {self.table}_workers WHERE microservice = $1 AND worker_id = $2"

    @property
    def workers(self) -> str:
        return f"""SELECT worker_id, microservice, host, pid, version, started_at,
    heartbeat_seconds, actions, concurrency, running, last_seen_at, {self._gone}
FROM {self.table}_workers WHERE microservice = $1 ORDER BY started_at, worker_id"""

    @property
    def end_gone_leases(self) -> str:
        """The leases of the service's jobs held by gone workers end now (the reclaim of
        expired leases then applies its rules); returns how many."""
        return f"""UPDATE {self.table} SET lease_expires_at = now() - interval '1 second'
WHERE microservice = $1 AND {_LEASED} AND lease_owner IN (
    SELECT worker_id FROM {self.table}_workers WHERE microservice = $1 AND {self._gone})"""

    @property
    def forget(self) -> str:
        return f"""DELETE FROM {self.table}_workers
WHERE microservice = $1 AND {self._gone} AND last_seen_at < now() - $2 * interval '1 second'"""

    @property
    def pause(self) -> str:
        return f"""INSERT INTO {self.table}_paused (microservice, action) VALUES ($1, $2)
ON CONFLICT (microservice, action) DO NOTHING"""

    @property
    def resume(self) -> str:
        return f"DELETE FROM {self.table}_paused WHERE microservice = $1 AND action = $2"

    @property
    def paused(self) -> str:
        return f"""SELECT action, paused_at FROM {self.table}_paused WHERE microservice = $1
ORDER BY action"""
