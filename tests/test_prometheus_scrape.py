"""A real Prometheus server (Debian's ``prometheus`` package) scrapes the greeting example's
/metrics, and its HTTP query API returns ``jobs_processed_total`` after jobs ran.

``bash scripts/install-prometheus.sh`` installs the binary. On CI (``CI=true``) a missing
binary fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "greeting"
SCRAPE_JOB = "greeting"


def require_binary(name: str) -> str:
    """The binary's path; skip without it locally, fail on CI."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not on PATH (bash scripts/install-prometheus.sh installs it)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(probe: Callable[[], Any], seconds: float, what: str) -> Any:
    """Call ``probe`` every 0.2 s until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {seconds} s")


@pytest.fixture
def example_url(tmp_path: Path) -> Iterator[str]:
    """The greeting example (a copy, dev mode, JSON logs) on 127.0.0.1, a free port."""
    workdir = tmp_path / "greeting"
    shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns(".env", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        MICROSERVICE_NAME="greeting-service",
        DEV_MODE="True",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT="0",
        LOG_CONSOLE_JSON="True",
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "main.py"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        # One append per line as it arrives (extend() would be atomic only at the end).
        for line in proc.stdout or ():
            lines.append(line.rstrip("\n"))  # noqa: PERF401

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def listening_port() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"the example exited: {lines[-20:]}")
        for line in lines[:]:  # a snapshot: the reader thread appends
            record = json.loads(line)
            if record["event"] == "http listening":
                return int(record["port"])
        return None

    try:
        port = wait_until(listening_port, 60, "the example listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            reader.join(10)
            if proc.stdout is not None:
                proc.stdout.close()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    """Run an instant query through Prometheus's HTTP API; its result vector."""
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            body = json.load(answer)
    except OSError:  # not up yet
        return []
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_jobs_processed_total(example_url: str, tmp_path: Path) -> None:
    """Three jobs through /dev/job; Prometheus scrapes /metrics; the query answers 3."""
    prometheus = require_binary("prometheus")
    with httpx.Client(base_url=example_url, timeout=30) as client:
        for name in ("a", "b", "c"):
            answer = client.post("/dev/job", json={"action": "greet", "name": name})
            assert answer.status_code == 200, answer.text

    target = urllib.parse.urlsplit(example_url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: {SCRAPE_JOB}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    promtool = shutil.which("promtool")
    if promtool is not None:
        check = subprocess.run(
            [promtool, "check", "config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    prom = f"http://127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={urllib.parse.urlsplit(prom).netloc}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first scrape comes ~5-6 s after start (Prometheus throttles target discovery).
        expr = f'jobs_processed_total{{job="{SCRAPE_JOB}"}}'
        result = wait_until(lambda: query(prom, expr), 60, "jobs_processed_total in Prometheus")
        assert len(result) == 1
        assert result[0]["metric"]["instance"] == target
        assert float(result[0]["value"][1]) == 3
        up = query(prom, f'up{{job="{SCRAPE_JOB}"}}')
        assert [float(r["value"][1]) for r in up] == [1]
        health = query(prom, f'health_status{{job="{SCRAPE_JOB}"}}')
        assert [float(r["value"][1]) for r in health] == [2]
        errors = query(prom, f'jobs_errors_total{{job="{SCRAPE_JOB}"}}')
        assert [float(r["value"][1]) for r in errors] == [0]
    finally:
        server.terminate()
        try:
            server.wait(30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(10)
            assert server.stderr is not None
            server.stderr.close()
