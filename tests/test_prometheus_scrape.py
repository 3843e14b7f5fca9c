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
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "greeting"
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


@pytest.fixture
def prometheus_bin() -> str:
    """Path of the prometheus binary (checked before the example is started)."""
    return require_binary("prometheus")


@pytest.fixture
def example_url(service: Callable[..., ServiceProcess], tmp_path: Path) -> Iterator[str]:
    """A copy of the greeting example (dev mode) on 127.0.0.1; stopped with SIGTERM after."""
    workdir = tmp_path / "greeting"
    shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns(".env", "__pycache__"))
    example = service(workdir, {"MICROSERVICE_NAME": "greeting-service", "DEV_MODE": "True"})
    example.wait_healthy(60)
    yield example.url
    example.signal(signal.SIGTERM)
    assert example.wait(60) == 0


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


def test_prometheus_scrapes_jobs_processed_total(
    prometheus_bin: str, example_url: str, tmp_path: Path
) -> None:
    """Three jobs through /dev/job; Prometheus scrapes /metrics; the query answers 3."""
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
            prometheus_bin,
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
        result = wait_until(lambda: query(prom, expr), timeout=60, interval=0.2)
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
