"""What the greeting example has not imported once it is up and idle (issue 23, idle RSS and
start-up): every module here is loaded on the first request or feature that needs it, and
each one imported at start would cost memory and start-up time that nobody uses. Checked on
``sys.modules`` of the real process, 0.5 s after its first ``/health`` 200 (the memory case
of ``bench/run.py`` measures RSS at the same moment)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServiceProcess, wait_until

pytestmark = pytest.mark.slow

#: Module prefixes the idle example (dev mode, in-memory queue, no ADMIN_TOKEN, no OTLP
#: endpoint, no MONGODB_URI) must not have imported, each with what brings it in.
NOT_AT_IDLE = (
    "httpx",  # the REST service's client: built on its first request
    "httpcore",
    "idna",
    "pygments",
    "usvc_http.admin",  # only with ADMIN_TOKEN
    "jinja2",
    "usvc_core.cli",  # the ``usvc`` command
    "usvc_core.admin_records",  # the operator port's records: CLI, admin API, dashboard
    "usvc_core.adapter_support.admin_checks",  # ... and its argument checks
    "usvc_core.adapter_support.cursors",  # ... and its page cursors
    "argcomplete",
    "usvc_core.scheduling",  # only with periodic actions
    "usvc_core.cron",
    "croniter",
    "usvc_core.telemetry_export",  # only with an OTLP endpoint
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "grpc",
    "usvc_sqlite",  # other queues than the one QUEUE_URL (here: dev mode) picks
    "sqlite3",
    "usvc_postgres.queue",
    "asyncpg",
    "usvc_oracle",
    "oracledb",
    "usvc_mongo.registry",  # only with MONGODB_URI
    "usvc_mongo.surface",
    "usvc_core.service_registry",
    "pymongo",
    "websockets",  # uvicorn is told there is no WebSocket protocol
    "wsproto",
)

# Runs main.py as ``python main.py`` would, and writes the process's imported modules once
# its /health answers 200 and half a second has passed. http.client is imported by the
# floor (uvicorn) already, so the probe adds nothing the list above names.
_PROBE = """
import http.client, json, os, runpy, sys, threading, time

def dump():
    port = int(os.environ["HTTP_PORT"])
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                break
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.02)
    time.sleep(0.5)
    out = os.environ["PROBE_OUT"]
    with open(out + ".tmp", "w") as f:
        json.dump(sorted(sys.modules), f)
    os.replace(out + ".tmp", out)

threading.Thread(target=dump, daemon=True).start()
sys.argv = ["main.py"]
sys.path.insert(0, os.getcwd())
runpy.run_path("main.py", run_name="__main__")
"""


def _idle_modules(service: Callable[..., ServiceProcess], out: Path) -> set[str]:
    env = {"MICROSERVICE_NAME": "greeting-service", "DEV_MODE": "True", "PROBE_OUT": str(out)}
    svc = service(ROOT / "examples" / "greeting", env, argv=[sys.executable, "-c", _PROBE])

    def dumped() -> bool:
        if svc.proc.poll() is not None:
            raise AssertionError(f"the example exited early:\n{svc.output()}")
        return out.exists()

    wait_until(dumped, timeout=60)
    modules: list[str] = json.loads(out.read_text())
    return set(modules)


def test_the_idle_example_has_not_imported_what_only_a_request_or_a_feature_needs(
    tmp_path: Path, service: Callable[..., ServiceProcess]
) -> None:
    modules = _idle_modules(service, tmp_path / "modules.json")
    # It is really up: the HTTP surface, the worker and the example's REST service.
    assert {"usvc_http.surface", "usvc_core.worker", "usvc_http.rest.service"} <= modules
    loaded = sorted(
        name for name in modules if any(name == p or name.startswith(p + ".") for p in NOT_AT_IDLE)
    )
    assert loaded == []
