"""What every adapter of :class:`usvc_core.ports.FleetAdmin` checks and decides the same
way: the arguments it accepts and when a worker is gone."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from usvc_core.ports import GONE_AFTER_HEARTBEATS, WorkerRecord

__all__ = ["GONE_AFTER_HEARTBEATS", "check_action_name", "check_worker_record", "gone_since"]


def check_action_name(action: str) -> None:
    if not isinstance(action, str) or not action:
        raise ValueError(f"action={action!r}: name the action to pause or resume")


def check_worker_record(record: WorkerRecord) -> None:
    """A record the store can keep: an id, a service, and a heartbeat it can judge by."""
    if not record.worker_id or not record.microservice:
        raise ValueError("a worker record needs a worker_id and a microservice")
    beat = record.heartbeat_seconds
    if isinstance(beat, bool) or not math.isfinite(beat) or beat <= 0:
        raise ValueError(f"heartbeat_seconds={beat!r} must be a positive number of seconds")
    if record.started_at.utcoffset() is None:
        raise ValueError("WorkerRecord.started_at must be a timezone-aware datetime")


def gone_since(record: WorkerRecord) -> datetime:
    """When a worker last seen at ``record.last_seen_at`` turns gone (store's clock)."""
    assert record.last_seen_at is not None
    return record.last_seen_at + timedelta(seconds=GONE_AFTER_HEARTBEATS * record.heartbeat_seconds)
