"""RestAPIService against a real HTTP server on 127.0.0.1, scripted per request.

The service runs on a FakeClock (rate limiter, breaker, backoff sleeps never really sleep);
only the request timeout is real time, as it must be for a real socket.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
from usvc_core import CircuitOpenError, ConfigurationError, HealthRegistry, Status, UsvcError
from usvc_core.resilience import CircuitState
from usvc_http import PrometheusMetrics, RestAPIConfig, RestAPIService
from usvc_http.rest import TransportError, env_prefix_for, parse_retry_after
from usvc_http.rest.config import _env_overrides, with_env_overrides
from usvc_testing import FakeClock

# --- the scripted server -------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What the server does with one request."""

    kind: str  # respond | drop | hang | gate
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


def respond(status: int = 200, **headers: str) -> Step:
    return Step("respond", status, tuple((k.replace("_", "-"), v) for k, v in headers.items()))


DROP = Step("drop")  # read the request, close the connection without answering
HANG = Step("hang")  # read the request, never answer (until the server stops)
GATE = Step("gate")  # answer 200 once the test opens the gate


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """HTTP/1.1 with keep-alive on 127.0.0.1. Each request takes the next step of the script;
    the last step repeats."""

    script: list[Step] = field(default_factory=lambda: [respond(200)])
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self.gate = asyncio.Event()
        self._stopping = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def play(self, *steps: Step) -> None:
        self.script = list(steps)

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._stopping.set()
        self.gate.set()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    def _next(self) -> Step:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while not self._stopping.is_set():
                request_line = await reader.readline()
                if not request_line.strip():
                    return
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append(Received(method, target, headers, body))
                step = self._next()
                if step.kind == "drop":
                    return
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if step.kind == "hang":
                        await self._stopping.wait()
                        return
                    if step.kind == "gate":
                        await self.gate.wait()
                finally:
                    self.in_flight -= 1
                payload = json.dumps({"request": len(self.received)}).encode()
                head = [
                    f"HTTP/1.1 {step.status} {HTTPStatus(step.status).phrase}",
                    "Content-Type: application/json",
                    f"Content-Length: {len(payload)}",
                    *(f"{k}: {v}" for k, v in step.headers),
                ]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - the conditions (counters, FakeClock.sleepers) have no event to await
            await asyncio.sleep(0.005)


# --- the service under test ----------------------------------------------------------------


class FlakyAPI(RestAPIService):
    name = "flaky_api"
    env_file = None


@dataclass
class Harness:
    service: FlakyAPI
    clock: FakeClock
    metrics: PrometheusMetrics
    history: list[tuple[Status, dict[str, Any]]]

    def sent(self, status_class: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "outbound_requests_total", {"service": "flaky_api", "status_class": status_class}
        )
        return value or 0.0

    def circuit_gauge(self) -> float | None:
        return self.metrics.registry.get_sample_value(
            "outbound_circuit_state", {"service": "flaky_api"}
        )

    def states(self) -> list[Status]:
        return [status for status, _ in self.history]

    def health(self) -> tuple[Status, dict[str, Any]]:
        return self.history[-1]


Make = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    srv = ScriptedServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def make(server: ScriptedServer) -> AsyncIterator[Make]:
    made: list[FlakyAPI] = []

    async def build(base_url: str | None = None, **options: Any) -> Harness:
        clock = FakeClock()
        service = FlakyAPI(clock=clock)
        service.config = RestAPIConfig(
            **{"BASE_URL": base_url or server.url, "RETRY_BACKOFF_BASE": 0.0, **options}
        )
        health = HealthRegistry()
        history: list[tuple[Status, dict[str, Any]]] = []

        def record(registry: HealthRegistry) -> None:
            check = registry.get("flaky_api")
            if check is not None:
                history.append((check.status, dict(check.details)))

        health.subscribe(record)
        service.bind_health_registry(health)
        metrics = PrometheusMetrics()
        service.bind_metrics(metrics)
        await service.initialize()
        made.append(service)
        return Harness(service, clock, metrics, history)

    yield build
    for service in made:
        await service.cleanup()


# --- retries and health ----------------------------------------------------------------------


class TestRetries:
    async def test_success_reports_green(self, server: ScriptedServer, make: Make) -> None:
        """A 200 is returned after one request, health GREEN, counted as 2xx."""
        h = await make()
        response = await h.service.request("GET", "/items", params={"q": "1"})
        assert response.status_code == 200
        assert [(r.method, r.target) for r in server.received] == [("GET", "/items?q=1")]
        assert h.health() == (Status.GREEN, {"last_status": 200})
        assert h.sent("2xx") == 1

    async def test_5xx_is_retried_with_yellow_health_in_order(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """500, 500, 200: three requests reach the server; health goes YELLOW twice, then GREEN."""
        server.play(respond(500), respond(503), respond(200))
        h = await make(MAX_RETRIES=3)
        response = await h.service.request("GET", "/charges/1")
        assert response.status_code == 200
        assert len(server.received) == 3
        assert h.history == [
            (Status.GREEN, {}),
            (Status.YELLOW, {"last_status": 500, "attempt": 1}),
            (Status.YELLOW, {"last_status": 503, "attempt": 2}),
            (Status.GREEN, {"last_status": 200}),
        ]
        assert (h.sent("5xx"), h.sent("2xx")) == (2, 1)

    async def test_gives_up_after_max_retries_and_returns_the_last_response(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """With MAX_RETRIES=2 a server that always fails sees exactly 3 requests."""
        server.play(respond(502))
        h = await make(MAX_RETRIES=2, CB_FAILURE_THRESHOLD=10)
        response = await h.service.request("GET", "/")
        assert response.status_code == 502
        assert len(server.received) == 3
        assert h.health() == (Status.YELLOW, {"last_status": 502, "attempt": 3})

    async def test_4xx_is_not_retried(self, server: ScriptedServer, make: Make) -> None:
        """A 404 is the answer, not a failure: one request, health GREEN."""
        server.play(respond(404))
        h = await make()
        assert (await h.service.request("GET", "/missing")).status_code == 404
        assert len(server.received) == 1
        assert h.health() == (Status.GREEN, {"last_status": 404})

    async def test_429_waits_exactly_retry_after(self, server: ScriptedServer, make: Make) -> None:
        """A 429 with Retry-After: 5 is retried once 5 s have passed on the clock, not before."""
        server.play(respond(429, Retry_After="5"), respond(200))
        h = await make(RETRY_BACKOFF_BASE=1.0)
        call = asyncio.create_task(h.service.request("GET", "/limited"))
        await until(lambda: h.clock.sleepers == 1)
        assert len(server.received) == 1
        assert h.health() == (Status.YELLOW, {"last_status": 429, "attempt": 1})
        h.clock.advance(4.9)
        await asyncio.sleep(0.05)
        assert not call.done()
        assert len(server.received) == 1
        h.clock.advance(0.1)
        assert (await call).status_code == 200
        assert len(server.received) == 2
        assert h.service.breaker.failure_count == 0  # being rate-limited is not being down

    async def test_retry_after_beyond_the_cap_returns_the_429(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """A server asking for more than RETRY_BACKOFF_MAX_SECONDS gets no second request."""
        server.play(respond(429, Retry_After="120"), respond(200))
        h = await make(RETRY_BACKOFF_MAX_SECONDS=10.0)
        assert (await h.service.request("GET", "/")).status_code == 429
        assert len(server.received) == 1

    async def test_timeout_is_retried(self, server: ScriptedServer, make: Make) -> None:
        """A request that hangs past REQUEST_TIMEOUT_SECONDS is abandoned and tried again."""
        server.play(HANG, respond(200))
        h = await make(REQUEST_TIMEOUT_SECONDS=0.3)
        assert (await h.service.request("GET", "/slow")).status_code == 200
        assert len(server.received) == 2
        status, details = h.history[1]
        assert status is Status.YELLOW
        assert (details["last_status"], details["attempt"]) == (None, 1)
        assert "Timeout" in details["error"]
        assert (h.sent("timeout"), h.sent("2xx")) == (1, 1)

    async def test_timeouts_exhaust_retries_and_raise(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """When every attempt times out the caller gets httpx's TimeoutException."""
        server.play(HANG)
        h = await make(REQUEST_TIMEOUT_SECONDS=0.2, MAX_RETRIES=1)
        with pytest.raises(httpx.TimeoutException):
            await h.service.request("GET", "/slow")
        assert len(server.received) == 2

    async def test_dropped_connection_is_retried_for_get(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """A connection closed without an answer is retried for an idempotent GET."""
        server.play(DROP, respond(200))
        h = await make()
        assert (await h.service.request("GET", "/")).status_code == 200
        assert len(server.received) == 2
        assert h.history[1][1]["error"] == "RemoteProtocolError"
        assert h.sent("error") == 1


class TestNonIdempotent:
    async def test_post_is_not_retried_after_a_5xx(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """A POST that reached the server is not sent again: one request, the 500 returned."""
        server.play(respond(500), respond(201))
        h = await make()
        response = await h.service.request("POST", "/charges", json={"amount": 5})
        assert response.status_code == 500
        assert len(server.received) == 1

    async def test_patch_is_not_retried_after_a_dropped_connection(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """A PATCH whose connection dropped after sending may have been applied: not retried."""
        server.play(DROP, respond(200))
        h = await make()
        with pytest.raises(httpx.RemoteProtocolError):
            await h.service.request("PATCH", "/charges/1", json={"note": "x"})
        assert len(server.received) == 1

    async def test_post_with_idempotency_key_is_retried(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """With an idempotency key the POST is retried and every attempt carries the key."""
        server.play(respond(500), DROP, respond(201))
        h = await make()
        response = await h.service.request(
            "POST", "/charges", json={"amount": 5}, idempotency_key="job-42"
        )
        assert response.status_code == 201
        assert [r.headers.get("idempotency-key") for r in server.received] == ["job-42"] * 3
        assert all(json.loads(r.body) == {"amount": 5} for r in server.received)

    async def test_post_retry_can_be_opted_into(self, server: ScriptedServer, make: Make) -> None:
        """retry_non_idempotent=True retries a POST like a GET."""
        server.play(respond(503), respond(201))
        h = await make()
        response = await h.service.request("POST", "/x", retry_non_idempotent=True)
        assert response.status_code == 201
        assert len(server.received) == 2

    async def test_post_is_retried_when_the_connection_was_refused(self, make: Make) -> None:
        """Nothing listening: the POST never left, so it is retried; the server that comes up
        in the meantime receives it exactly once."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        h = await make(base_url=f"http://127.0.0.1:{port}", RETRY_BACKOFF_BASE=1.0)
        call = asyncio.create_task(h.service.request("POST", "/charges", json={"amount": 1}))
        await until(lambda: h.clock.sleepers == 1)
        assert h.health()[1]["error"] == "ConnectError"
        late = ScriptedServer([respond(201)])
        await late.start(port)
        try:
            h.clock.advance(1.0)  # the first backoff is at most RETRY_BACKOFF_BASE
            assert (await call).status_code == 201
            assert [r.method for r in late.received] == ["POST"]
        finally:
            await h.service.cleanup()
            await late.stop()


# --- the circuit breaker -------------------------------------------------------------------


class TestCircuit:
    async def test_opens_then_half_open_trial_then_closes(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """3 failures open the circuit (RED, nothing sent); after 30 s one trial goes;
        2 successes close it (GREEN)."""
        server.play(respond(500), respond(500), respond(500), respond(200))
        h = await make(
            MAX_RETRIES=0, CB_FAILURE_THRESHOLD=3, CB_RECOVERY_TIMEOUT=30.0, CB_SUCCESS_THRESHOLD=2
        )
        for _ in range(3):
            assert (await h.service.request("GET", "/")).status_code == 500
        assert h.service.breaker.state is CircuitState.OPEN
        assert h.health() == (Status.RED, {"circuit": "open", "last_status": 500, "attempt": 1})
        assert h.circuit_gauge() == 2
        with pytest.raises(CircuitOpenError, match="open"):
            await h.service.request("GET", "/")
        h.clock.advance(29.9)
        with pytest.raises(CircuitOpenError):
            await h.service.request("GET", "/")
        assert len(server.received) == 3

        h.clock.advance(0.1)
        assert (await h.service.request("GET", "/")).status_code == 200
        assert len(server.received) == 4
        assert h.service.breaker.state is CircuitState.HALF_OPEN
        assert h.health() == (Status.YELLOW, {"circuit": "half_open", "last_status": 200})
        assert h.circuit_gauge() == 1
        assert (await h.service.request("GET", "/")).status_code == 200
        assert h.service.breaker.state is CircuitState.CLOSED
        assert len(server.received) == 5
        assert h.circuit_gauge() == 0
        assert h.states() == [
            Status.GREEN,
            Status.YELLOW,
            Status.RED,
            Status.YELLOW,
            Status.YELLOW,
            Status.GREEN,
        ]

    async def test_health_turns_yellow_when_a_trial_is_due_without_a_call(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """/health does not stay RED past the recovery timeout while nobody calls: the
        service looks at its breaker when the timeout is over (HALF_OPEN, YELLOW)."""
        server.play(respond(500))
        h = await make(MAX_RETRIES=0, CB_FAILURE_THRESHOLD=1, CB_RECOVERY_TIMEOUT=10.0)
        await h.service.request("GET", "/")
        assert h.health()[0] is Status.RED
        await until(lambda: h.clock.sleepers == 1)  # the look, waiting on the clock
        h.clock.advance(9.9)
        await asyncio.sleep(0.01)
        assert h.health()[0] is Status.RED
        h.clock.advance(0.1)
        await until(lambda: h.health()[0] is Status.YELLOW)
        assert h.health() == (Status.YELLOW, {"circuit": "half_open"})
        assert h.circuit_gauge() == 1
        assert len(server.received) == 1  # nothing was sent to find out

    async def test_failed_trial_reopens(self, server: ScriptedServer, make: Make) -> None:
        """A failing HALF_OPEN trial opens the circuit again for a full recovery timeout."""
        server.play(respond(500))
        h = await make(MAX_RETRIES=0, CB_FAILURE_THRESHOLD=1, CB_RECOVERY_TIMEOUT=10.0)
        await h.service.request("GET", "/")
        h.clock.advance(10)
        assert (await h.service.request("GET", "/")).status_code == 500
        assert h.service.breaker.state is CircuitState.OPEN
        assert h.health()[0] is Status.RED
        h.clock.advance(9)
        with pytest.raises(CircuitOpenError):
            await h.service.request("GET", "/")
        assert len(server.received) == 2

    async def test_circuit_opening_stops_the_retries(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """A request whose failures open the circuit stops retrying and raises CircuitOpenError."""
        server.play(respond(500))
        h = await make(MAX_RETRIES=5, CB_FAILURE_THRESHOLD=2)
        with pytest.raises(CircuitOpenError) as caught:
            await h.service.request("GET", "/")
        assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)
        assert len(server.received) == 2

    async def test_only_one_trial_at_a_time(self, server: ScriptedServer, make: Make) -> None:
        """While the HALF_OPEN trial is in flight a second request is refused without sending."""
        server.play(respond(500), GATE)
        h = await make(MAX_RETRIES=0, CB_FAILURE_THRESHOLD=1, CB_RECOVERY_TIMEOUT=5.0)
        await h.service.request("GET", "/")
        h.clock.advance(5)
        trial = asyncio.create_task(h.service.request("GET", "/trial"))
        await until(lambda: len(server.received) == 2)
        with pytest.raises(CircuitOpenError, match="trial"):
            await h.service.request("GET", "/other")
        server.gate.set()
        assert (await trial).status_code == 200
        assert len(server.received) == 2


# --- rate limit, pool, lifecycle -----------------------------------------------------------


class TestLimits:
    async def test_rate_limit_holds_back_the_third_request(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """RATE_LIMIT_REQUESTS=2 per 60 s: the third request waits for the window."""
        h = await make(RATE_LIMIT_REQUESTS=2, RATE_LIMIT_WINDOW_SECONDS=60.0)
        calls = [asyncio.create_task(h.service.request("GET", f"/{i}")) for i in range(3)]
        await until(lambda: len(server.received) == 2 and h.clock.sleepers == 1)
        await asyncio.sleep(0.05)
        assert len(server.received) == 2
        h.clock.advance(60)
        responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert len(server.received) == 3

    async def test_connection_pool_size_bounds_concurrency(
        self, server: ScriptedServer, make: Make
    ) -> None:
        """With CONNECTION_POOL_SIZE=2, four concurrent requests use two connections."""
        server.play(GATE)
        h = await make(CONNECTION_POOL_SIZE=2)
        calls = [asyncio.create_task(h.service.request("GET", f"/{i}")) for i in range(4)]
        await until(lambda: server.in_flight == 2)
        await asyncio.sleep(0.1)
        assert server.max_in_flight == 2
        server.gate.set()
        assert [r.status_code for r in await asyncio.gather(*calls)] == [200] * 4
        assert len(server.received) == 4
        assert server.connections == 2

    async def test_client_lives_between_initialize_and_cleanup(
        self, server: ScriptedServer
    ) -> None:
        """No client before initialize(); cleanup() closes it."""
        service = FlakyAPI(clock=FakeClock())
        service.config = RestAPIConfig(BASE_URL=server.url)
        with pytest.raises(UsvcError, match="not initialized"):
            service.client  # noqa: B018
        async with service:
            client = service.client
            assert (await service.request("GET", "/")).status_code == 200
        assert client.is_closed
        with pytest.raises(UsvcError):
            service.client  # noqa: B018


# --- configuration ---------------------------------------------------------------------------


class TestConfig:
    def test_the_ten_options_and_their_defaults(self) -> None:
        """RestAPIConfig has the spec's ten options with the spec's defaults."""
        defaults = RestAPIConfig().model_dump()
        assert {k: defaults[k] for k in list(defaults)[:10]} == {
            "BASE_URL": "http://localhost:8000",
            "RATE_LIMIT_REQUESTS": 100,
            "RATE_LIMIT_WINDOW_SECONDS": 60.0,
            "CB_FAILURE_THRESHOLD": 5,
            "CB_RECOVERY_TIMEOUT": 30.0,
            "CB_SUCCESS_THRESHOLD": 2,
            "REQUEST_TIMEOUT_SECONDS": 30.0,
            "MAX_RETRIES": 3,
            "RETRY_BACKOFF_BASE": 1.0,
            "CONNECTION_POOL_SIZE": 10,
        }

    def test_code_mistakes_fail_at_once(self) -> None:
        """A typo in an option name or a relative BASE_URL is refused when the class is made."""
        with pytest.raises(ValueError, match="MAX_RETRY"):
            RestAPIConfig(MAX_RETRY=3)  # type: ignore[call-arg]
        with pytest.raises(ValueError, match="absolute"):
            RestAPIConfig(BASE_URL="/charges")

    @pytest.mark.parametrize(
        ("name", "prefix"),
        [("payment_api", "PAYMENT_API_"), ("billing-v2", "BILLING_V2_"), ("Geo API", "GEO_API_")],
    )
    def test_env_prefix_rule(self, name: str, prefix: str) -> None:
        """The prefix is the upper-cased name, non-alphanumerics as '_', plus '_'."""
        assert env_prefix_for(name) == prefix

    def test_environment_overrides_code(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """PAYMENT_API_* variables replace the options given in code; others stay."""
        monkeypatch.setenv("PAYMENT_API_BASE_URL", "http://10.0.0.5:9000")
        monkeypatch.setenv("PAYMENT_API_MAX_RETRIES", "7")
        monkeypatch.setenv("OTHER_API_MAX_RETRIES", "1")
        code = RestAPIConfig(BASE_URL="https://payments.example.com", CB_FAILURE_THRESHOLD=9)
        resolved = with_env_overrides(code, "PAYMENT_API_", env_file=None)
        assert resolved.BASE_URL == "http://10.0.0.5:9000"
        assert resolved.MAX_RETRIES == 7
        assert resolved.CB_FAILURE_THRESHOLD == 9

    def test_dotenv_file_overrides_code(self, tmp_path: Path) -> None:
        """The same variables are read from a .env file."""
        env_file = tmp_path / ".env"
        env_file.write_text("PAYMENT_API_RATE_LIMIT_REQUESTS=12\n")
        resolved = with_env_overrides(RestAPIConfig(), "PAYMENT_API_", env_file=str(env_file))
        assert resolved.RATE_LIMIT_REQUESTS == 12

    def test_without_a_prefixed_variable_nor_an_env_file_the_code_config_stays(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nothing can override an option: the config given in code comes back as it is,
        without building the overrides model (a service configured in code alone)."""
        monkeypatch.setenv("OTHER_API_MAX_RETRIES", "1")
        monkeypatch.setenv("payment_api_MAX_RETRIES", "1")  # names match case-sensitively
        code = RestAPIConfig(BASE_URL="https://payments.example.com")
        _env_overrides.cache_clear()
        assert with_env_overrides(code, "PAYMENT_API_", env_file=None) is code
        missing = tmp_path / "no.env"
        assert with_env_overrides(code, "PAYMENT_API_", env_file=str(missing)) is code
        assert _env_overrides.cache_info().currsize == 0
        # A prefixed variable, or an env file to read, still goes through the model.
        monkeypatch.setenv("PAYMENT_API_MAX_RETRIES", "5")
        assert with_env_overrides(code, "PAYMENT_API_", env_file=None).MAX_RETRIES == 5
        monkeypatch.delenv("PAYMENT_API_MAX_RETRIES")
        env_file = tmp_path / ".env"
        env_file.write_text("PAYMENT_API_MAX_RETRIES=6\n")
        assert with_env_overrides(code, "PAYMENT_API_", env_file=str(env_file)).MAX_RETRIES == 6

    def test_bad_override_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An invalid value fails with a message naming the environment variable."""
        monkeypatch.setenv("PAYMENT_API_MAX_RETRIES", "-1")
        with pytest.raises(ConfigurationError, match="PAYMENT_API_MAX_RETRIES='-1'"):
            with_env_overrides(RestAPIConfig(), "PAYMENT_API_", env_file=None)

    async def test_service_applies_overrides_on_initialize(
        self, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """FLAKY_API_BASE_URL points the service at the test server instead of the code's URL."""
        monkeypatch.setenv("FLAKY_API_BASE_URL", server.url)
        monkeypatch.setenv("FLAKY_API_MAX_RETRIES", "0")
        service = FlakyAPI(clock=FakeClock())
        service.config = RestAPIConfig(BASE_URL="https://unreachable.invalid")
        server.play(respond(500), respond(200))
        async with service:
            assert server.url == service.config.BASE_URL
            assert (await service.request("GET", "/")).status_code == 500
        assert len(server.received) == 1


class TestRetryAfterHeader:
    NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("7", 7.0),
            (" 2.5 ", 2.5),
            ("-3", 0.0),
            ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
            ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
            ("soon", None),
            ("nan", None),
            (None, None),
        ],
    )
    def test_parse(self, value: str | None, seconds: float | None) -> None:
        """Delay-seconds and HTTP-dates are understood; the past means now; junk means none."""
        assert parse_retry_after(value, self.NOW) == seconds


class TestTransportErrorForRetryOn:
    """``usvc_http.rest.TransportError`` decides ``retry_on`` as ``httpx.TransportError`` did."""

    def test_matches_what_httpx_transport_error_matches(self) -> None:
        request = httpx.Request("GET", "http://example.com/")
        response = httpx.Response(500, request=request)
        for exc in (
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.ProxyError("x"),
        ):
            assert isinstance(exc, TransportError)
            assert isinstance(exc, (CircuitOpenError, TransportError))  # as retry_on is used
        for other in (
            httpx.HTTPStatusError("500", request=request, response=response),
            ValueError("x"),
            CircuitOpenError("open"),
        ):
            assert not isinstance(other, TransportError)
        assert issubclass(httpx.PoolTimeout, TransportError)
        assert not issubclass(TimeoutError, TransportError)  # a job timeout is not one

    def test_an_except_clause_refuses_it(self) -> None:
        """Python tests real subclasses in ``except``: it refuses the stand-in loudly."""

        def catch() -> None:
            try:
                raise httpx.ConnectError("refused")
            except TransportError:
                pass

        with pytest.raises(TypeError, match="BaseException"):
            catch()
