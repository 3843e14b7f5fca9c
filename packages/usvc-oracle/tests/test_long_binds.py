"""Strings beyond the server's string limit are bound as CLOB (issue 22 item 1).

The thin driver sends a str bind longer than the server's limit as LONG; the limit comes
from the server's capabilities: 4 000 bytes with 19c's default MAX_STRING_SIZE=STANDARD.
Oracle refuses a LONG bind in INSERT/UPDATE ... RETURNING (ORA-22816), and the fake models
both. Each statement that carries a payload, a result or an error message is tried at the
sizes of a typical traceback or payload: 4 001, 20 000 and 40 000 bytes.
"""

from __future__ import annotations

import json

import oracledb
import pytest
from usvc_core.jobs import JobStatus
from usvc_core.ports import EnqueueRequest
from usvc_oracle import OracleQueue
from usvc_oracle.rows import MAX_VARCHAR_BIND_BYTES, clob_inputs
from usvc_oracle_fake import EXTENDED_MAX_STRING_SIZE, FakeDatabase

SIZES = [4_001, 20_000, 40_000]


def _text(n_bytes: int) -> str:
    """A string of exactly ``n_bytes`` UTF-8 bytes, mostly two-byte characters."""
    return "é" * (n_bytes // 2) + "x" * (n_bytes % 2)


def _request(blob: str) -> EnqueueRequest:
    return EnqueueRequest(payload={"action": "greet", "blob": blob}, microservice="svc")


def _payload_of(n_bytes: int) -> str:
    """A blob whose JSON payload is exactly ``n_bytes`` long (json.dumps escapes é)."""
    overhead = len(json.dumps({"action": "greet", "blob": ""}))
    return "x" * (n_bytes - overhead)


def _clob_binds(fake_db: FakeDatabase, statement: str) -> set[str]:
    """The binds a statement's cursor declared as CLOB (recorded by the fake)."""
    return {
        name
        for entry in fake_db.input_sizes
        if entry[0] == statement
        for name, typ in entry[1].items()
        if typ is oracledb.DB_TYPE_CLOB
    }


def test_the_limit_is_the_standard_string_size() -> None:
    """4 000 bytes: over it CLOB, at it a plain string (counted in UTF-8 bytes)."""
    assert MAX_VARCHAR_BIND_BYTES == 4_000
    assert clob_inputs([{"p": "x" * 4_000}], ["p"]) == {}
    assert clob_inputs([{"p": "x" * 4_001}], ["p"]) == {"p": oracledb.DB_TYPE_CLOB}
    assert clob_inputs([{"p": "é" * 2_001}], ["p"]) == {"p": oracledb.DB_TYPE_CLOB}
    assert clob_inputs([{"p": "x"}, {"p": None}], ["p"]) == {}


@pytest.mark.parametrize("n_bytes", SIZES)
async def test_enqueue(queue: OracleQueue, fake_db: FakeDatabase, n_bytes: int) -> None:
    """INSERT ... RETURNING with a payload over the limit: bound as CLOB, stored whole."""
    blob = _payload_of(n_bytes)
    job = await queue.enqueue(_request(blob))
    stored = fake_db.rows[int(job.id)]["PAYLOAD"]
    assert len(stored.encode()) == n_bytes
    assert json.loads(stored)["blob"] == blob
    assert _clob_binds(fake_db, "enqueue") == {"payload"}


@pytest.mark.parametrize("n_bytes", SIZES)
async def test_enqueue_many(queue: OracleQueue, fake_db: FakeDatabase, n_bytes: int) -> None:
    """executemany with RETURNING, one big payload among small ones: the whole column is
    bound as CLOB and every job is stored and claimed whole."""
    blob = _payload_of(n_bytes)
    small, big, other = await queue.enqueue_many([_request("a"), _request(blob), _request("b")])
    assert _clob_binds(fake_db, "enqueue") == {"payload"}
    claimed = {j.id: j for j in await queue.claim("svc", "w", 3, 30)}
    assert claimed[big.id].payload == {"action": "greet", "blob": blob}
    assert claimed[small.id].payload == {"action": "greet", "blob": "a"}
    assert claimed[other.id].payload == {"action": "greet", "blob": "b"}


@pytest.mark.parametrize("n_bytes", SIZES)
async def test_fail(queue: OracleQueue, fake_db: FakeDatabase, n_bytes: int) -> None:
    """fail() with a long traceback: bound as CLOB, stored (cut at 32 000 characters)."""
    await queue.enqueue(_request("a"))
    (job,) = await queue.claim_and_start("svc", "w", 1, 30)
    message = _text(n_bytes)
    await queue.fail(job, "HANDLER_ERROR", message, 1.0)
    stored = fake_db.rows[int(job.id)]["ERROR_MESSAGE"]
    assert stored == (message if len(message) <= 32_000 else message[:32_000] + "...")
    assert _clob_binds(fake_db, "fail") == {"error_message"}


@pytest.mark.parametrize("n_bytes", SIZES)
async def test_retry(queue: OracleQueue, fake_db: FakeDatabase, n_bytes: int) -> None:
    """retry() (UPDATE ... RETURNING STATUS) with a long traceback: bound as CLOB."""
    await queue.enqueue(_request("a"))
    (job,) = await queue.claim_and_start("svc", "w", 1, 30)
    message = _text(n_bytes)
    assert await queue.retry(job, "HANDLER_ERROR", message, 0, 1.0) is JobStatus.READY
    assert fake_db.rows[int(job.id)]["ERROR_MESSAGE"].startswith(message[:1000])
    assert _clob_binds(fake_db, "retry") == {"error_message"}


async def test_complete_with_large_results(queue: OracleQueue, fake_db: FakeDatabase) -> None:
    """complete() with a 20 KB result: bound as CLOB, stored whole."""
    await queue.enqueue(_request("a"))
    (job,) = await queue.claim_and_start("svc", "w", 1, 30)
    await queue.complete(job, {"echo": "y" * 20_000}, 1.0)
    assert json.loads(fake_db.rows[int(job.id)]["RESULTS"]) == {"echo": "y" * 20_000}
    assert _clob_binds(fake_db, "complete") == {"results"}


async def test_the_fake_refuses_a_long_bind_next_to_returning(fake_db: FakeDatabase) -> None:
    """The model the tests above rely on: a 4 001-byte string bound as a plain str in a
    statement with RETURNING fails with ORA-22816; as CLOB it passes; at 4 000 it passes."""
    from usvc_oracle_fake import FakeConnection

    conn = FakeConnection(fake_db)
    names = {v: k for k, v in fake_db.names.items()}
    params = {
        "microservice": "svc",
        "action": "a",
        "priority": 0,
        "token": None,
        "idempotency_key": None,
        "unique_key": None,
        "max_attempts": 1,
        "delay_seconds": 0.0,
    }
    cur = conn.cursor()
    outs = {f"o_{c}": cur.var(str) for c in ("id", "run_at", "created_at", "updated_at")}
    with pytest.raises(oracledb.DatabaseError, match="ORA-22816"):
        await cur.execute(names["enqueue"], {**params, **outs, "payload": "x" * 4_001})
    await cur.execute(names["enqueue"], {**params, **outs, "payload": "x" * 4_000})
    cur.setinputsizes(payload=oracledb.DB_TYPE_CLOB)
    await cur.execute(names["enqueue"], {**params, **outs, "payload": "x" * 4_001})
    await conn.rollback()


async def test_extended_string_size_changes_nothing(
    queue: OracleQueue, fake_db: FakeDatabase
) -> None:
    """With MAX_STRING_SIZE=EXTENDED (a 32 767-byte limit) the same values still go as
    CLOB above 4 000 bytes: correct on both settings, whichever the server has."""
    fake_db.max_string_size = EXTENDED_MAX_STRING_SIZE
    blob = _payload_of(20_000)
    job = await queue.enqueue(_request(blob))
    assert _clob_binds(fake_db, "enqueue") == {"payload"}
    assert json.loads(fake_db.rows[int(job.id)]["PAYLOAD"])["blob"] == blob
