"""Bad-input suite: broken bodies, bad payloads and misbehaving handlers, against one real
service process. Every bad job ends Failed with the right code and a message that says what
is wrong; every broken request gets a 4xx with a detail; the next good job still succeeds.

Sizes: ``USVC_RELIABILITY_EXAMPLES`` hypothesis examples per property (default 25).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from usvc_core import ErrorCode

from tests.conftest import ServiceProcess
from tests.reliability.conftest import start_service
from tests.reliability.figures import env_int, record_figures

pytestmark = pytest.mark.slow

EXAMPLES = env_int("USVC_RELIABILITY_EXAMPLES", 25)
MAX_BODY = 16 * 1024 * 1024  # big enough for the 10 MB strings, small enough to test the limit
TEN_MB = 10 * 1024 * 1024
MAX_MESSAGE = 4000  # error messages are truncated to this (usvc_core.execution)
KNOWN_ACTIONS = frozenset(
    {"work", "typed", "raise", "timeout", "block", "unserializable", "nan", "exit", "interrupt"}
    | {"unprintable", "self_cancel"}
)
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a shared, noisy machine: durations prove nothing
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: How many bad inputs of each kind were tried (for docs/reliability.md).
tried: Counter[str] = Counter()


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One dev-mode service for the whole module: bad inputs must not wear it down."""
    proc = start_service(
        tmp_path_factory.mktemp("bad-input"),
        {
            "DEV_MODE": "True",
            "HTTP_MAX_BODY_BYTES": str(MAX_BODY),
            "MAX_CONCURRENT_JOBS": "8",
            "LOG_CONSOLE_JSON": "True",
        },
    )
    try:
        proc.wait_healthy()
        yield proc
        # After everything: healthy again, no stray traceback, a clean exit on SIGTERM.
        # Parsing the largest hostile bodies holds the loop for a moment, which the
        # event_loop check reports (YELLOW) for its 5 s window: recovery is what counts.
        deadline = time.monotonic() + 20
        health = httpx.get(f"{proc.url}/health", timeout=10)
        while health.json()["status"] != "GREEN" and time.monotonic() < deadline:
            time.sleep(0.5)
            health = httpx.get(f"{proc.url}/health", timeout=10)
        assert health.json()["status"] == "GREEN", health.text
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        output = proc.output()
        assert "Traceback" not in output, output[-5000:]
        assert "exception was never retrieved" not in output, output[-5000:]
        record_figures("bad_input", bad_inputs_tried=sum(tried.values()), **dict(tried))
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(svc: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=svc.url, timeout=60) as c:
        yield c


def post_raw(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/dev/job", content=body, headers={"content-type": "application/json"})


def post_job(client: httpx.Client, payload: Any) -> httpx.Response:
    return post_raw(client, json.dumps(payload).encode())


def assert_good_job_still_runs(client: httpx.Client, n: int = 7) -> None:
    r = post_job(client, {"action": "typed", "count": n, "label": "ok", "tags": ["a"]})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == {"count": n, "label_length": 2, "tags": 1}


def assert_failed(r: httpx.Response, code: ErrorCode, *fragments: str) -> str:
    """The response of a job that ended Failed with ``code``; returns its message."""
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["status"] == "Failed", body
    assert body["error"]["error_code"] == code.value, body
    message: str = body["error"]["error_message"]
    assert message, body
    assert len(message) <= MAX_MESSAGE, len(message)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def assert_refused(r: httpx.Response, *statuses: int) -> str:
    """A request refused before any job was made: a 4xx with a ``detail`` string."""
    assert r.status_code in statuses, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail, r.text
    return detail


# --- broken request bodies -------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def parses_to_a_job(body: bytes) -> bool:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("action"), str)


@HYPOTHESIS
@given(body=st.binary(max_size=512) | st.text(max_size=256).map(str.encode))
def test_garbage_bodies_get_a_4xx_with_a_detail(client: httpx.Client, body: bytes) -> None:
    """Any body that is not a JSON object with an action is refused with 400/422 and a detail."""
    assume(not parses_to_a_job(body))
    tried["garbage_body"] += 1
    assert_refused(post_raw(client, body), 400, 422)


@HYPOTHESIS
@given(value=json_values.filter(lambda v: not isinstance(v, dict)))
def test_json_that_is_not_an_object_is_refused(client: httpx.Client, value: Any) -> None:
    """A JSON array, string, number, boolean or null body is a 422 naming what was expected."""
    tried["not_an_object"] += 1
    detail = assert_refused(post_job(client, value), 422)
    assert "JSON object" in detail


@HYPOTHESIS
@given(
    body=st.dictionaries(st.text().filter(lambda k: k != "action"), json_values, max_size=5),
    action=st.none() | st.just("") | json_values.filter(lambda v: not isinstance(v, str)),
    present=st.booleans(),
)
def test_a_missing_or_non_string_action_is_refused(
    client: httpx.Client, body: dict[str, Any], action: Any, present: bool
) -> None:
    """An object without an "action" string is a 422 that names the field."""
    if present:
        body["action"] = action
    tried["missing_or_bad_action"] += 1
    detail = assert_refused(post_job(client, body), 422)
    assert '"action"' in detail


def test_bodies_over_the_limit_are_refused(client: httpx.Client) -> None:
    """Bodies over HTTP_MAX_BODY_BYTES get 413, whether declared or streamed without a length."""
    big = b'{"action": "typed", "label": "' + b"x" * MAX_BODY + b'"}'
    tried["oversized_body"] += 2
    assert str(MAX_BODY) in assert_refused(post_raw(client, big), 413)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    streamed = client.post("/dev/job", content=chunks())
    assert str(MAX_BODY) in assert_refused(streamed, 413)
    assert_good_job_still_runs(client)


# --- bad payloads that become jobs ---------------------------------------------------------


@HYPOTHESIS
@given(name=st.text(min_size=1, max_size=64).filter(lambda s: s not in KNOWN_ACTIONS))
def test_an_unknown_action_fails_the_job(client: httpx.Client, name: str) -> None:
    """A job naming no registered action ends Failed UNKNOWN_ACTION, naming it and known ones."""
    tried["unknown_action"] += 1
    assert_failed(post_job(client, {"action": name}), ErrorCode.UNKNOWN_ACTION, name, "typed")
    assert_good_job_still_runs(client)


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


# Values pydantic cannot coerce: containers and None for every field, non-numeric text and
# fractional floats for the int, numbers for the strings.
not_an_int = (
    st.none()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
    | st.text(max_size=20).filter(lambda s: not _has_digit(s))
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))
)
not_a_str = (
    st.none()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # not JSON: see the test below
    | st.lists(st.text(max_size=3), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2)
)
not_a_str_list = (
    st.integers()
    | st.text(max_size=5)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    | st.lists(st.integers() | st.none(), min_size=1, max_size=3)
)


@HYPOTHESIS
@given(
    field_and_value=st.tuples(st.just("count"), not_an_int)
    | st.tuples(st.just("label"), not_a_str)
    | st.tuples(st.just("tags"), not_a_str_list)
)
def test_wrong_field_types_fail_validation(
    client: httpx.Client, field_and_value: tuple[str, Any]
) -> None:
    """A field of the wrong type ends the job Failed VALIDATION_ERROR, naming the field."""
    field, value = field_and_value
    payload: dict[str, Any] = {"action": "typed", "count": 1, "label": "x", "tags": []}
    payload[field] = value
    tried["wrong_field_type"] += 1
    assert_failed(post_job(client, payload), ErrorCode.VALIDATION_ERROR, field)
    assert_good_job_still_runs(client)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_numbers_json_cannot_hold_are_refused_before_a_job_exists(
    client: httpx.Client, number: bytes
) -> None:
    """Python's JSON reader accepts NaN and Infinity, but they are not JSON and no store
    could hand them to another producer: a 422 that says so, and no job."""
    detail = assert_refused(post_raw(client, b'{"action": "typed", "label": ' + number + b"}"), 422)
    assert "cannot be stored as JSON" in detail
    assert_good_job_still_runs(client)


def test_a_missing_field_fails_validation(client: httpx.Client) -> None:
    """A required field left out ends the job Failed VALIDATION_ERROR, naming the field."""
    tried["missing_field"] += 1
    message = assert_failed(
        post_job(client, {"action": "typed", "label": "x"}), ErrorCode.VALIDATION_ERROR, "count"
    )
    assert "Field required" in message


def test_ten_megabyte_strings(client: httpx.Client) -> None:
    """10 MB strings: stored and processed where valid, short clear failures where not."""
    huge = "x" * TEN_MB
    tried["ten_mb_string"] += 4
    ok = post_job(client, {"action": "typed", "count": 1, "label": huge})
    assert ok.status_code == 200, ok.text[:500]
    assert ok.json()["results"]["label_length"] == TEN_MB
    assert_failed(
        post_job(client, {"action": "typed", "count": huge, "label": "x"}),
        ErrorCode.VALIDATION_ERROR,
        "count",
    )
    message = assert_failed(post_job(client, {"action": huge}), ErrorCode.UNKNOWN_ACTION)
    assert message.startswith("no action handler matched: xxx")
    assert_failed(
        post_job(client, {"action": "typed", "count": 1, "label": "x", "tags": [huge, 5]}),
        ErrorCode.VALIDATION_ERROR,
        "tags.1",
    )
    assert_good_job_still_runs(client)


def nest(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_body(depth: int, where: str) -> bytes:
    """``{"action": "typed", ..., where: [[[..."x"..]]]}`` without recursing in the encoder."""
    head = json.dumps({"action": "typed", "count": 1, "label": "x"})[:-1]
    return f'{head}, "{where}": {"[" * depth}"x"{"]" * depth}}}'.encode()


@HYPOTHESIS
@given(depth=st.integers(2, 3000) | st.sampled_from([999, 1000, 1001, 100_000]))
def test_deep_nesting_is_refused_or_fails_validation(client: httpx.Client, depth: int) -> None:
    """Deeply nested values: a 400 when too deep to parse, else VALIDATION_ERROR naming the
    field; in an ignored extra field the job completes. The service never breaks."""
    tried["deep_nesting"] += 2
    r = post_raw(client, nested_body(depth, "tags"))
    if r.status_code == 400:
        assert "not valid JSON" in assert_refused(r, 400)
    else:
        assert_failed(r, ErrorCode.VALIDATION_ERROR, "tags.0")
    extra = post_raw(client, nested_body(depth, "extra"))
    if extra.status_code == 400:
        assert "not valid JSON" in assert_refused(extra, 400)
    else:
        assert extra.status_code == 200, extra.text[:500]
    assert_good_job_still_runs(client)


# --- handlers that misbehave -----------------------------------------------------------------

#: action -> (error code, fragments the message must hold)
MISBEHAVIOUR: dict[str, tuple[ErrorCode, tuple[str, ...]]] = {
    "raise": (ErrorCode.HANDLER_ERROR, ("ValueError", "input unusable")),
    "timeout": (ErrorCode.TIMEOUT, ("0.3 s",)),
    "block": (ErrorCode.TIMEOUT, ("without yielding", "asyncio.to_thread")),
    "unserializable": (ErrorCode.RESULT_NOT_SERIALIZABLE, ("datetime",)),
    "nan": (ErrorCode.RESULT_NOT_SERIALIZABLE, ("nan",)),
    "exit": (ErrorCode.HANDLER_ERROR, ("SystemExit", "3")),
    "interrupt": (ErrorCode.HANDLER_ERROR, ("KeyboardInterrupt",)),
    "unprintable": (ErrorCode.HANDLER_ERROR, ("UnprintableError", "could not be rendered")),
    "self_cancel": (ErrorCode.HANDLER_ERROR, ("CancelledError", "was not cancelled")),
}


@pytest.mark.parametrize("name", sorted(MISBEHAVIOUR))
def test_a_misbehaving_handler_fails_its_job_only(client: httpx.Client, name: str) -> None:
    """Each way a handler can misbehave ends its job Failed with its code; the next job runs."""
    code, fragments = MISBEHAVIOUR[name]
    tried["misbehaving_handler"] += 1
    assert_failed(post_job(client, {"action": name}), code, *fragments)
    assert_good_job_still_runs(client)


async def _submit_all(url: str, actions: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as ac:
        return await asyncio.gather(
            *(
                ac.post(
                    "/dev/job",
                    json={"action": a, "count": i, "label": "n", "tags": []}
                    if a == "typed"
                    else {"action": a},
                )
                for i, a in enumerate(actions)
            )
        )


@HYPOTHESIS
@given(actions=st.lists(st.sampled_from([*sorted(MISBEHAVIOUR), "typed"]), min_size=2, max_size=10))
def test_misbehaving_jobs_do_not_hurt_their_neighbours(
    svc: ServiceProcess, actions: list[str]
) -> None:
    """A random mix of good and misbehaving jobs run at once: each gets its own outcome."""
    tried["misbehaving_handler"] += sum(a != "typed" for a in actions)
    responses = asyncio.run(_submit_all(svc.url, actions))
    for i, (a, r) in enumerate(zip(actions, responses, strict=True)):
        if a == "typed":
            assert r.status_code == 200, r.text
            assert r.json()["results"]["count"] == i
        else:
            code, fragments = MISBEHAVIOUR[a]
            assert_failed(r, code, *fragments)


def test_the_service_log_names_each_failure(svc: ServiceProcess) -> None:
    """Every failed job was logged as one 'job failed' line carrying its code and token."""
    failed = [e for e in svc.json_lines() if e.get("event") == "job failed"]
    assert failed
    assert all(e.get("error_code") in ErrorCode.__members__ for e in failed)
    assert all(e.get("token") and e.get("job_id") for e in failed)
