"""The greeting example and the spec's Quick Start, run as real processes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DEV_SH_EXAMPLE, ROOT, ServiceProcess

pytestmark = pytest.mark.slow

QUICKSTART_HANDLER = """from pydantic import BaseModel
from usvc_core import action

class GreetInput(BaseModel):
    name: str

class GreetOutput(BaseModel):
    message: str

@action("greet")
async def handle(input: GreetInput) -> GreetOutput:
    return GreetOutput(message=f"Hello, {input.name}!")
"""

QUICKSTART_MAIN = """from usvc_core import Application

app = Application()
app.run()
"""


def metric(text: str, name: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and not s.labels:
                return float(s.value)
    raise AssertionError(f"{name} not in /metrics")


@DEV_SH_EXAMPLE
def test_greeting_example(service: Callable[..., ServiceProcess]) -> None:
    """The README's command starts the example; it answers jobs, health and metrics, and
    exits 0 on SIGTERM."""
    svc = service(
        ROOT,
        {},
        argv=["bash", str(ROOT / "scripts" / "dev.sh"), "example"],
    )
    svc.wait_healthy()
    r = httpx.post(f"{svc.url}/dev/job", json={"action": "greet", "name": "World"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["results"] == {"message": "Hello, World!"}
    health = httpx.get(f"{svc.url}/health").json()
    assert health["status"] == "GREEN"
    assert {"job_queue", "payment_api"} <= set(health["checks"])
    assert metric(httpx.get(f"{svc.url}/metrics").text, "jobs_processed_total") == 1
    bad = httpx.post(f"{svc.url}/dev/job", json={"action": "invalid"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["error"]["error_code"] == "UNKNOWN_ACTION"
    svc.signal(signal.SIGTERM)
    assert svc.wait(60) == 0


def test_quickstart_in_a_fresh_project(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> None:
    """The spec's Quick Start, importing from usvc_core, runs unchanged with its .env."""
    (tmp_path / "src" / "actions" / "greet").mkdir(parents=True)
    (tmp_path / "src" / "actions" / "greet" / "handler.py").write_text(QUICKSTART_HANDLER)
    (tmp_path / "main.py").write_text(QUICKSTART_MAIN)
    (tmp_path / ".env").write_text("MICROSERVICE_NAME=greeting-service\nDEV_MODE=True\n")
    svc = service(tmp_path, {})
    svc.wait_healthy()
    r = httpx.post(f"{svc.url}/dev/job", json={"action": "greet", "name": "World"}, timeout=10)
    assert r.status_code == 200 and r.json()["results"] == {"message": "Hello, World!"}
    svc.signal(signal.SIGINT)
    assert svc.wait(60) == 0


def test_sigterm_releases_running_jobs(service: Callable[..., ServiceProcess]) -> None:
    """SIGTERM with a job still running past the drain releases it and exits 0."""
    svc = service(
        ROOT / "tests" / "e2e_service",
        {
            "MICROSERVICE_NAME": "e2e",
            "DEV_MODE": "True",
            "SHUTDOWN_TIMEOUT_SECONDS": "0.5",
            "LOG_CONSOLE_JSON": "True",
        },
    )
    svc.wait_healthy()
    # The request waits for the job; send it from a thread and signal while it runs.
    result: dict[str, int] = {}

    def submit() -> None:
        try:
            r = httpx.post(f"{svc.url}/dev/job", json={"action": "sleep", "ms": 60_000}, timeout=30)
            result["status"] = r.status_code
        except httpx.HTTPError:
            result["status"] = -1

    t = threading.Thread(target=submit)
    t.start()

    def running() -> bool:
        return any(line.get("event") == "sleeping" for line in svc.json_lines())

    from tests.conftest import wait_until

    wait_until(running)
    svc.signal(signal.SIGTERM)
    assert svc.wait(60) == 0
    t.join(30)
    events = [line.get("event") for line in svc.json_lines()]
    assert "released unfinished jobs back to Ready" in events
    released = next(
        e for e in svc.json_lines() if e.get("event") == "released unfinished jobs back to Ready"
    )
    assert released["count"] == 1
    assert events.index("signal received; shutting down") < events.index("worker stopped")
