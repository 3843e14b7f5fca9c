"""Security checks on real processes: ``/dev/job`` exists only in dev mode, passwords never
leave the process, and the HTTP server listens on HTTP_HOST and nowhere else."""

from __future__ import annotations

import base64
import contextlib
import signal
import socket
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceProcess, free_port, wait_until
from tests.reliability.conftest import (
    JobsDb,
    can_connect,
    listening_ipv4,
    non_loopback_ipv4,
)
from tests.reliability.figures import record_figures

pytestmark = pytest.mark.slow

ORACLE_PASSWORD = "Or4cle-pw/secret+1"
OTLP_USER = "otel-shipper"
OTLP_PASSWORD = "Otlp-pw:secret=2"
MONGO_USER = "registry"
MONGO_PASSWORD = "Mongo-pw@secret#3"
MONGO_URI = (
    f"mongodb://{MONGO_USER}:{urllib.parse.quote(MONGO_PASSWORD, safe='')}"
    "@127.0.0.1:{port}/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"
)


def secret_forms() -> dict[str, str]:
    """Each password as it could leak: raw, URL-encoded, and inside a basic-auth header."""
    forms: dict[str, str] = {}
    for name, user, password in (
        ("ORACLE_PASSWORD", "scott", ORACLE_PASSWORD),
        ("OTEL_EXPORTER_OTLP_PASSWORD", OTLP_USER, OTLP_PASSWORD),
        ("MONGODB_URI password", MONGO_USER, MONGO_PASSWORD),
    ):
        forms[name] = password
        forms[f"{name} (url-encoded)"] = urllib.parse.quote(password, safe="")
        forms[f"{name} (basic auth)"] = base64.b64encode(f"{user}:{password}".encode()).decode()
    return forms


def assert_no_secret(where: str, text: str) -> None:
    leaked = [name for name, form in secret_forms().items() if form in text]
    assert not leaked, f"{leaked} found in {where}"


def secret_env(dead_port: int) -> dict[str, str]:
    """Every secret setting filled in, pointing at endpoints that refuse connections (so the
    code paths that report connection errors run too)."""
    return {
        "ORACLE_USER": "scott",
        "ORACLE_PASSWORD": ORACLE_PASSWORD,
        "ORACLE_DSN": f"127.0.0.1:{dead_port}/FREEPDB1",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{dead_port}",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"http://127.0.0.1:{dead_port}",
        "OTEL_EXPORTER_OTLP_USER": OTLP_USER,
        "OTEL_EXPORTER_OTLP_PASSWORD": OTLP_PASSWORD,
        "DEBUG": "True",
    }


def test_dev_job_is_unreachable_without_dev_mode(
    tmp_path: Path, reliability_service: Callable[..., ServiceProcess]
) -> None:
    """With DEV_MODE=False, POST /dev/job is a 404, it is not in the OpenAPI document, and
    no job reaches the queue."""
    db = JobsDb(tmp_path / "jobs.db")
    svc = reliability_service({"QUEUE_URL": db.url, "DEV_MODE": "False"})
    svc.wait_healthy(60)
    r = httpx.post(f"{svc.url}/dev/job", json={"action": "work", "n": 1}, timeout=10)
    assert r.status_code == 404, r.text
    assert httpx.get(f"{svc.url}/docs", timeout=10).status_code == 404
    paths = httpx.get(f"{svc.url}/openapi.json", timeout=10).json()["paths"]
    assert "/dev/job" not in paths and "/health" in paths
    assert db.counts().total() == 0
    svc.signal(signal.SIGTERM)
    assert svc.wait(60) == 0


def _collect(svc: ServiceProcess) -> dict[str, str]:
    """Everything the process shows the outside world over HTTP, if it answers."""
    seen: dict[str, str] = {}
    for path in ("/health", "/metrics", "/openapi.json"):
        with contextlib.suppress(httpx.HTTPError):
            seen[path] = httpx.get(f"{svc.url}{path}", timeout=10).text
    return seen


def test_passwords_never_leave_a_running_service(
    tmp_path: Path, reliability_service: Callable[..., ServiceProcess]
) -> None:
    """A dev-mode service with every secret set serves jobs, failures, broken requests,
    /health and /metrics, then stops: no password appears in any of it or in its log."""
    env = {"DEV_MODE": "True", "QUEUE_URL": JobsDb(tmp_path / "jobs.db").url}
    env |= secret_env(free_port())
    checked = 0
    for json_logs in ("True", "False"):
        svc = reliability_service({**env, "LOG_CONSOLE_JSON": json_logs})
        svc.wait_healthy(60)
        answers: dict[str, str] = {}
        with httpx.Client(base_url=svc.url, timeout=30) as client:
            for i, payload in enumerate(
                [
                    {"action": "typed", "count": 1, "label": "ok"},
                    {"action": "typed", "count": "not a number", "label": "x"},
                    {"action": "raise"},
                    {"action": "no-such-action"},
                    {"action": "timeout"},
                ]
            ):
                answers[f"job {i}"] = client.post("/dev/job", json=payload).text
            answers["broken body"] = client.post("/dev/job", content=b"{not json").text
        answers |= _collect(svc)
        svc.signal(signal.SIGTERM)
        assert svc.wait(60) == 0
        for where, text in answers.items():
            assert_no_secret(where, text)
        log = svc.output()
        assert "job failed" in log and "application stopped" in log  # the log is the real one
        assert_no_secret(f"log (LOG_CONSOLE_JSON={json_logs})", log)
        checked += len(answers) + 1
    record_figures("security", outputs_checked_for_passwords=checked)


def _run_briefly(svc: ServiceProcess) -> dict[str, str]:
    """Let a service that may fail at startup either exit or answer; then stop it."""
    wait_until(lambda: svc.proc.poll() is not None or _collect(svc).get("/health"), timeout=90)
    seen = _collect(svc) if svc.proc.poll() is None else {}
    if svc.proc.poll() is None:
        svc.signal(signal.SIGTERM)
        svc.wait(60)
    return seen


@pytest.mark.parametrize(
    "case",
    ["oracle queue unreachable", "mongo registry unreachable", "invalid settings"],
)
def test_passwords_never_appear_when_a_backend_fails(
    case: str, tmp_path: Path, reliability_service: Callable[..., ServiceProcess]
) -> None:
    """Startup and connection errors of the Oracle queue and the Mongo registry, and the
    settings error report, never quote a password."""
    dead = free_port()
    env = secret_env(dead) | {"LOG_CONSOLE_JSON": "True"}
    if case == "oracle queue unreachable":
        env |= {"DEV_MODE": "False", "ORACLE_CONNECT_TIMEOUT_SECONDS": "1"}
    elif case == "mongo registry unreachable":
        env |= {
            "DEV_MODE": "False",
            "QUEUE_URL": JobsDb(tmp_path / "jobs.db").url,
            "MONGODB_URI": MONGO_URI.format(port=dead),
        }
    else:
        env |= {
            "DEV_MODE": "False",
            "MONGODB_URI": MONGO_URI.format(port=dead),
            "MAX_CONCURRENT_JOBS": "lots",
            "HTTP_PORT": "99999",
        }
    svc = reliability_service(env)
    seen = _run_briefly(svc)
    output = svc.output()
    assert output.strip(), "the process said nothing: nothing was checked"
    if case == "invalid settings":
        assert svc.proc.returncode == 2
        assert "MAX_CONCURRENT_JOBS" in output and "HTTP_PORT" in output
    for where, text in seen.items():
        assert_no_secret(f"{case}: {where}", text)
    assert_no_secret(f"{case}: log", output)


# --- the listening address ---------------------------------------------------------------


def test_the_server_listens_on_http_host_only(
    reliability_service: Callable[..., ServiceProcess],
) -> None:
    """HTTP_HOST=127.0.0.1: the only listening socket on the port is 127.0.0.1 (not
    0.0.0.0), and the machine's other address, if it has one, refuses connections."""
    svc = reliability_service({"DEV_MODE": "True", "HTTP_HOST": "127.0.0.1"})
    svc.wait_healthy(60)
    assert listening_ipv4(svc.port) == {"127.0.0.1"}
    other = non_loopback_ipv4()
    if other is not None:
        assert not can_connect(other, svc.port), f"reachable on {other}"
    svc.signal(signal.SIGTERM)
    assert svc.wait(60) == 0
    record_figures("bind", http_host="127.0.0.1", other_address_checked=other or "none")


def test_the_server_binds_exactly_the_given_loopback_address(
    reliability_service: Callable[..., ServiceProcess],
) -> None:
    """HTTP_HOST=127.0.0.2 (a loopback address Linux always has): reachable there, refused
    on 127.0.0.1, one listening socket on exactly that address."""
    svc = reliability_service({"DEV_MODE": "True", "HTTP_HOST": "127.0.0.2"})
    svc.wait_healthy(60)
    assert svc.url.startswith("http://127.0.0.2:")
    assert listening_ipv4(svc.port) == {"127.0.0.2"}
    assert not can_connect("127.0.0.1", svc.port)
    svc.signal(signal.SIGTERM)
    assert svc.wait(60) == 0


def test_can_connect_detects_a_listener() -> None:
    """The reachability probe used above reports a listening socket (so a 'refused' is real)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert can_connect("127.0.0.1", port)
        assert listening_ipv4(port) == {"127.0.0.1"}
    assert not can_connect("127.0.0.1", port)


def test_the_password_grep_finds_every_form() -> None:
    """The grep above would catch a password written raw, URL-encoded or as basic auth."""
    for form in secret_forms().values():
        with pytest.raises(AssertionError):
            assert_no_secret("sample", f"log line ... {form} ...")
    assert_no_secret("sample", "SecretStr('**********')")
