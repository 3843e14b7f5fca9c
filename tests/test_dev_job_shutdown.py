"""SIGTERM while ``POST /dev/job`` waits (issue 13, item 10): a real service process, a real
HTTP request waiting on a running job, a real signal."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ServiceProcess, wait_until

pytestmark = pytest.mark.slow


def test_sigterm_answers_a_waiting_dev_job_at_once_with_503(
    service: Callable[..., ServiceProcess],
) -> None:
    """The waiting request gets 503 saying the service is shutting down and the job is kept,
    while the drain still waits for the job (the answer does not wait for the shutdown);
    nothing is logged as an error; a second SIGTERM puts the job back and exits 0."""
    svc = service(
        ROOT / "tests" / "e2e_service",
        {
            "MICROSERVICE_NAME": "e2e",
            "DEV_MODE": "True",
            "SHUTDOWN_TIMEOUT_SECONDS": "120",  # the drain outlasts any answer below
            "DEV_JOB_WAIT_SECONDS": "120",
            "LOG_CONSOLE_JSON": "True",
        },
    )
    svc.wait_healthy()
    answer: dict[str, Any] = {}

    def submit() -> None:
        try:
            r = httpx.post(
                f"{svc.url}/dev/job", json={"action": "sleep", "ms": 600_000}, timeout=60
            )
            answer["status"] = r.status_code
            answer["body"] = r.json()
        except httpx.HTTPError as exc:
            answer["error"] = repr(exc)

    client = threading.Thread(target=submit)
    client.start()
    wait_until(lambda: any(line.get("event") == "sleeping" for line in svc.json_lines()))
    svc.signal(signal.SIGTERM)
    client.join(60)
    assert not client.is_alive()
    assert svc.proc.poll() is None, "the answer came only after the process had exited"
    assert answer.get("status") == 503, answer
    body = answer["body"]
    assert body["status"] == "Processing" and body["job_id"]
    assert "shutting down" in body["detail"] and "the job is kept" in body["detail"]
    svc.signal(signal.SIGTERM)  # a second signal shortens the drain
    assert svc.wait(60) == 0
    lines = svc.json_lines()
    events = [line.get("event") for line in lines]
    assert "released unfinished jobs back to Ready" in events
    errors = [line for line in lines if line.get("level") in ("error", "critical")]
    assert errors == []
    assert "Traceback" not in svc.output()
