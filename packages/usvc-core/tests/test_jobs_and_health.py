"""Job lifecycle, error codes and the health model."""

from __future__ import annotations

import dataclasses

import pytest
from usvc_core import ErrorCode, HealthRegistry, Job, JobStatus, Status
from usvc_core.jobs import NON_RETRYABLE_CODES, TRACE_KEY, TRANSITIONS, can_transition


class TestLifecycle:
    def test_status_strings_are_the_specs(self) -> None:
        """The stored strings are exactly the spec's."""
        assert [s.value for s in JobStatus] == [
            "Ready",
            "Assigned",
            "Processing",
            "Completed",
            "Failed",
        ]

    def test_finished_states_are_terminal(self) -> None:
        """Completed and Failed allow no further move."""
        assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()
        assert TRANSITIONS[JobStatus.FAILED] == frozenset()
        assert JobStatus.COMPLETED.is_finished and not JobStatus.PROCESSING.is_finished

    @pytest.mark.parametrize(
        ("old", "new", "allowed"),
        [
            (JobStatus.READY, JobStatus.ASSIGNED, True),
            (JobStatus.ASSIGNED, JobStatus.PROCESSING, True),
            (JobStatus.ASSIGNED, JobStatus.READY, True),
            (JobStatus.PROCESSING, JobStatus.COMPLETED, True),
            (JobStatus.PROCESSING, JobStatus.READY, True),
            (JobStatus.READY, JobStatus.COMPLETED, False),
            (JobStatus.READY, JobStatus.PROCESSING, False),
            (JobStatus.COMPLETED, JobStatus.READY, False),
        ],
    )
    def test_transitions(self, old: JobStatus, new: JobStatus, allowed: bool) -> None:
        """Only the diagram's arrows are allowed."""
        assert can_transition(old, new) is allowed

    def test_error_codes_are_closed_and_documented(self) -> None:
        """The design's seven codes and CANCELLED exist; deterministic ones never retry."""
        assert {c.value for c in ErrorCode} == {
            "UNKNOWN_ACTION",
            "INVALID_PAYLOAD",
            "VALIDATION_ERROR",
            "HANDLER_ERROR",
            "TIMEOUT",
            "RESULT_NOT_SERIALIZABLE",
            "LEASE_EXPIRED",
            "CANCELLED",
        }
        assert ErrorCode.HANDLER_ERROR not in NON_RETRYABLE_CODES
        assert ErrorCode.VALIDATION_ERROR in NON_RETRYABLE_CODES

    def test_token_defaults_to_job_id(self) -> None:
        """A job without a token is correlated by its id."""
        assert Job(id="7", microservice="m", action="a", payload={}).token == "7"
        assert Job(id="7", microservice="m", action="a", payload={}, token="t").token == "t"

    def test_trace_context_is_read_from_the_payload(self) -> None:
        """Only string pairs under the trace key count as trace context."""
        job = Job(
            id="1",
            microservice="m",
            action="a",
            payload={"action": "a", TRACE_KEY: {"traceparent": "00-x", "bad": 1}},
        )
        assert job.trace_context == {"traceparent": "00-x"}
        assert Job(id="1", microservice="m", action="a", payload=[1]).trace_context == {}
        job.attempts, job.max_attempts = 2, 3
        assert job.attempts_left == 1


class TestHealth:
    def test_values(self) -> None:
        """RED=0, YELLOW=1, GREEN=2."""
        assert (Status.RED, Status.YELLOW, Status.GREEN) == (0, 1, 2)

    def test_aggregate_is_the_minimum(self) -> None:
        """Any RED check makes the whole RED; no checks is GREEN."""
        h = HealthRegistry()
        assert h.aggregate() is Status.GREEN
        h.register("a")
        h.update("b", Status.YELLOW, {"attempt": 2})
        assert h.aggregate() is Status.YELLOW
        h.update("a", Status.RED, {"error": "down"})
        assert h.aggregate() is Status.RED
        h.unregister("a")
        assert h.aggregate() is Status.YELLOW
        assert h.names == ["b"]

    def test_snapshot_has_the_specs_shape(self) -> None:
        """The snapshot renders as the /health JSON."""
        h = HealthRegistry()
        h.update("job_queue", Status.GREEN, {"last_poll": "ok"})
        body = h.snapshot().to_dict()
        assert body["status"] == "GREEN"
        assert body["checks"] == {"job_queue": {"status": "GREEN", "details": {"last_poll": "ok"}}}
        assert "+00:00" in body["timestamp"]

    def test_listeners_hear_changes_only(self) -> None:
        """Subscribers are called on a change, not on a repeated identical update."""
        h = HealthRegistry()
        seen: list[Status] = []
        h.subscribe(lambda reg: seen.append(reg.aggregate()))
        h.update("x", Status.YELLOW)
        h.update("x", Status.YELLOW)
        h.update("x", Status.RED)
        assert seen == [Status.YELLOW, Status.RED]
        assert h.get("x") is not None
        assert h.get("missing") is None


def test_a_job_snapshot_copies_every_field_and_shares_no_state() -> None:
    job = Job(id="j-1", microservice="svc", action="noop", payload={"action": "noop"})
    values = {f.name: f"value-{n}" for n, f in enumerate(dataclasses.fields(Job))}
    for name, value in values.items():  # a distinct value in every field
        setattr(job, name, value)
    clone = job.snapshot()
    assert clone is not job
    assert type(clone) is Job
    assert {name: getattr(clone, name) for name in values} == values
    job.status = JobStatus.COMPLETED
    assert clone.status == values["status"]  # a later write to the job changes no snapshot
