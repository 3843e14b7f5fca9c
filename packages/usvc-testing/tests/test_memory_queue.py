"""What only the in-memory queue promises beyond the contract: claims under per-action
limits step over a saturated action's backlog once, not at every claim."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from usvc_core.ports import EnqueueRequest
from usvc_testing import FakeClock, InMemoryQueue
from usvc_testing.queues.memory import _Due

SERVICE = "memory-tests"


def _of(action: str, priority: int = 0) -> EnqueueRequest:
    return EnqueueRequest(payload={"action": action}, microservice=SERVICE, priority=priority)


async def test_a_saturated_backlog_is_stepped_over_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first claim that finds "slow" at its limit sets its 5,000 waiting jobs aside;
    the next claims pop only what they hand out (counted pops, not time), and the
    set-aside jobs come back in order once the limit allows."""
    queue = InMemoryQueue(FakeClock())
    slow = await queue.enqueue_many([_of("slow", priority=5) for _ in range(5000)])
    await queue.enqueue_many([_of("fast") for _ in range(100)])
    limits = {"slow": 2}
    running = await queue.claim_and_start(SERVICE, "w", 2, 60.0, max_running=limits)
    assert [j.id for j in running] == [slow[0].id, slow[1].id]

    pops = 0
    pop: Callable[[_Due], Any] = _Due.pop  # every due or set-aside job leaves through it

    def counting(due: _Due) -> Any:
        nonlocal pops
        pops += 1
        return pop(due)

    monkeypatch.setattr(_Due, "pop", counting)
    first = await queue.claim_and_start(SERVICE, "w", 10, 60.0, max_running=limits)
    assert [j.action for j in first] == ["fast"] * 10
    assert pops >= 4998  # every waiting "slow" job set aside once
    pops = 0
    for _ in range(5):
        batch = await queue.claim_and_start(SERVICE, "w", 10, 60.0, max_running=limits)
        assert [j.action for j in batch] == ["fast"] * 10
    assert pops == 50
    await queue.complete(running[0], {}, 1.0)
    [next_slow] = await queue.claim_and_start(SERVICE, "w", 1, 60.0, max_running=limits)
    assert next_slow.id == slow[2].id
    rest = await queue.claim_and_start(SERVICE, "w", 10_000, 60.0)
    assert [j.id for j in rest[:3]] == [slow[3].id, slow[4].id, slow[5].id]
    assert len(rest) == 4997 + 40


# --- store: session revocations stay bounded, the history setting is checked ----------------


async def test_expired_session_revocations_are_forgotten() -> None:
    """Revoking a session drops the revocations that have expired: the queue keeps only
    the live ones, however many logouts there were."""
    clock = FakeClock()
    queue = InMemoryQueue(clock)
    for n in range(100):
        await queue.revoke_session(f"s{n}", clock.now() + timedelta(seconds=10))
    clock.advance(11)
    await queue.revoke_session("last", clock.now() + timedelta(seconds=10))
    assert set(queue._revoked) == {"last"}


def test_attempt_history_must_keep_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="attempt_history"):
        InMemoryQueue(attempt_history=0)
    with pytest.raises(TypeError, match="attempt_history"):
        InMemoryQueue(attempt_history=2.5)  # type: ignore[arg-type]


def _circular() -> dict[str, Any]:
    payload: dict[str, Any] = {"action": "a"}
    payload["self"] = payload
    return payload


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "a", "x": float("nan")},
        {"action": "a", "x": [float("-inf")]},
        {"action": "a", "x": {1, 2}},
        {"action": "a", (1, 2): "tuple key"},
        _circular(),
        {"action": "a", "n": 1, 2: "int key", "t": (1, "x"), "u": "\ud800é", "f": 0.1},
    ],
)
async def test_enqueue_stores_what_a_json_round_trip_keeps(payload: dict[str, Any]) -> None:
    """The stored payload is json.loads(json.dumps(payload, allow_nan=False)), and a payload
    it refuses is refused with the same error (the queue calls the C encoder directly)."""
    try:
        expected: Any = json.loads(json.dumps(payload, allow_nan=False))
    except (TypeError, ValueError) as exc:
        expected = exc
    queue = InMemoryQueue(FakeClock())
    request = EnqueueRequest(payload=payload, microservice=SERVICE)
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)) as raised:
            await queue.enqueue(request)
        assert str(raised.value) == str(expected)
        # A refused payload leaves nothing behind: the next one is stored as usual.
        assert (await queue.enqueue(_of("b"))).payload == {"action": "b"}
        return
    job = await queue.enqueue(request)
    assert job.payload == expected
    stored = await queue.get(job.id)
    assert stored is not None and stored.payload == expected


async def test_a_payload_refused_once_is_stored_once_fixed() -> None:
    """The queue keeps its JSON encoder between enqueues: an encoding that fails (it may
    leave the refused dict in the encoder's circular-reference markers) must not make the
    same dict, fixed, look circular the next time."""
    queue = InMemoryQueue(FakeClock())
    payload: dict[str, Any] = {"action": "a", "inner": {"x": 1}, "bad": {1, 2}}
    with pytest.raises(TypeError, match="not JSON serializable"):
        await queue.enqueue(EnqueueRequest(payload=payload, microservice=SERVICE))
    payload["bad"] = [1, 2]
    job = await queue.enqueue(EnqueueRequest(payload=payload, microservice=SERVICE))
    assert job.payload == {"action": "a", "inner": {"x": 1}, "bad": [1, 2]}
