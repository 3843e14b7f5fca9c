"""Bad-input suite, part two: rows written into the SQLite queue by a producer that does not
use the kit (the table is shared). Payloads that are not JSON, not UTF-8, not objects, lack
an "action" string or nest too deeply each end Failed INVALID_PAYLOAD with a message saying
so; the claim that delivers them never breaks, and good jobs next to them complete.

Sizes: ``USVC_RELIABILITY_EXAMPLES`` hypothesis examples (default 25).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import ServiceProcess
from tests.reliability.conftest import JobsDb, start_service
from tests.reliability.figures import env_int, record_figures

pytestmark = pytest.mark.slow

EXAMPLES = env_int("USVC_RELIABILITY_EXAMPLES", 25)
GOOD = '{"action": "typed", "count": 3, "label": "fine"}'
MESSAGE_STARTS = (
    "payload is not valid JSON",
    "payload must be a JSON object",
    'payload must have an "action" string',
)

tried = {"rows": 0}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, JobsDb]]:
    """One worker on an SQLite file for the whole module."""
    workdir = tmp_path_factory.mktemp("bad-rows")
    db = JobsDb(workdir / "jobs.db")
    db.create()
    proc = start_service(
        workdir,
        {
            "QUEUE_URL": db.url,
            "DEV_MODE": "False",
            "POLLING_INTERVAL_SECONDS": "0.1",  # rows written by others wake nobody
            "LOG_CONSOLE_JSON": "True",
        },
    )
    try:
        proc.wait_healthy(60)
        yield proc, db
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        output = proc.output()
        assert "Traceback" not in output, output[-5000:]
        record_figures("bad_rows", bad_rows_tried=tried["rows"])
    finally:
        proc.stop()


def _is_a_routable_job(raw: Any) -> bool:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
    if not isinstance(raw, str):
        return False
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("action"), str)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# Around the interpreter's recursion limit both decoding and repr() of a payload can fail.
depths = st.integers(2, 200_000) | st.sampled_from([500, 990, 999, 1000, 1001, 5000])
raw_payloads = (
    st.binary(max_size=64)
    | st.text(max_size=64)
    | json_values.map(json.dumps)
    | st.dictionaries(st.text(), json_values, max_size=3).map(
        lambda d: json.dumps({k: v for k, v in d.items() if k != "action"})
    )
    | json_values.filter(lambda v: not isinstance(v, str)).map(
        lambda v: json.dumps({"action": v, "count": 1})
    )
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | depths.map(lambda depth: "[" * depth + "]" * depth)
    | depths.map(lambda depth: '{"a":' * depth + "1" + "}" * depth)
)


def _wait_finished(db: JobsDb, ids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = db.rows(ids)
        if all(r["status"] in ("Completed", "Failed") for r in rows.values()):
            return rows
        assert time.monotonic() < deadline, {i: r["status"] for i, r in rows.items()}
        time.sleep(0.05)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raws=st.lists(raw_payloads, min_size=1, max_size=8))
def test_rows_that_are_not_jobs_fail_as_invalid_payload(
    worker: tuple[ServiceProcess, JobsDb], raws: list[Any]
) -> None:
    """Each bad row ends Failed INVALID_PAYLOAD with a message saying what is wrong; a good
    row written between them completes."""
    assume(not any(_is_a_routable_job(r) for r in raws))
    _, db = worker
    bad = [db.insert_raw(raw) for raw in raws]
    good = db.insert_raw(GOOD)
    tried["rows"] += len(bad)
    rows = _wait_finished(db, [*bad, good])
    assert rows[good]["status"] == "Completed", rows[good]
    assert json.loads(rows[good]["results"]) == {"count": 3, "label_length": 4, "tags": 0}
    for job_id in bad:
        row = rows[job_id]
        assert (row["status"], row["error_code"]) == ("Failed", "INVALID_PAYLOAD"), row
        assert row["error_message"].startswith(MESSAGE_STARTS), row["error_message"]
        assert len(row["error_message"]) <= 4000
