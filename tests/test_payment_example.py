"""The greeting example's PaymentAPI, end to end: an Application with the service registered,
the ``pay`` action run through ``POST /dev/job``, a fake payment provider on a real socket,
and ``/health`` and ``/metrics`` read over real HTTP."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from usvc_core import Application, WorkerSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "greeting"


@dataclass
class FakePaymentProvider:
    """Answers ``POST /charges`` with 201 and a charge, or with ``fail_with`` when set."""

    fail_with: int | None = None
    charges: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request_line := (await reader.readline()).strip():
                method, target, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = json.loads(await reader.readexactly(int(headers["content-length"])))
                self.charges.append({"method": method, "target": target, **body, **headers})
                status = self.fail_with or 201
                answer = {"id": f"ch_{len(self.charges)}", **body} if status == 201 else {}
                payload = json.dumps(answer).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def provider() -> AsyncIterator[FakePaymentProvider]:
    fake = FakePaymentProvider()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def app(
    provider: FakePaymentProvider, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Application]:
    # What a deployment sets: where the provider is, and faster failure for the test.
    monkeypatch.setenv("PAYMENT_API_BASE_URL", f"http://127.0.0.1:{provider.port}")
    monkeypatch.setenv("PAYMENT_API_MAX_RETRIES", "1")
    monkeypatch.setenv("PAYMENT_API_RETRY_BACKOFF_BASE", "0")
    monkeypatch.setenv("PAYMENT_API_CB_FAILURE_THRESHOLD", "2")
    monkeypatch.syspath_prepend(str(EXAMPLE))  # as when main.py runs from examples/greeting
    payment_api = importlib.import_module("src.services.payment").PaymentAPI
    settings = WorkerSettings(  # type: ignore[call-arg]
        _env_file=None,
        MICROSERVICE_NAME="greeting-payment-e2e",
        DEV_MODE=True,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=0,
        DEV_JOB_WAIT_SECONDS=20,
    )
    application = Application(
        EXAMPLE / "src" / "actions", settings=settings, configure_logging=False
    )
    application.register_service(payment_api)
    async with application:
        yield application


async def test_payment_api_runs_in_an_action_and_shows_in_health(
    app: Application, provider: FakePaymentProvider
) -> None:
    """The pay action charges through PaymentAPI; /health and /metrics show payment_api."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as http:
        health = (await http.get("/health")).json()
        assert health["checks"]["payment_api"]["status"] == "GREEN"

        done = await http.post(
            "/dev/job", json={"action": "pay", "amount": 12.5, "currency": "EUR"}
        )
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["results"] == {"charge_id": "ch_1", "amount": 12.5, "currency": "EUR"}
        assert len(provider.charges) == 1
        charge = provider.charges[0]
        assert (charge["method"], charge["target"]) == ("POST", "/charges")
        assert charge["idempotency-key"] == body["job_id"]

        health = (await http.get("/health")).json()
        assert health["checks"]["payment_api"] == {
            "status": "GREEN",
            "details": {"last_status": 201},
        }
        metrics = (await http.get("/metrics")).text
        assert 'outbound_requests_total{service="payment_api",status_class="2xx"} 1.0' in metrics
        assert 'outbound_circuit_state{service="payment_api"} 0.0' in metrics


async def test_provider_outage_turns_health_red(
    app: Application, provider: FakePaymentProvider
) -> None:
    """Two 500s (one retry, allowed by the idempotency key) open the circuit: /health is 503
    with payment_api RED, and the job fails with the provider's error."""
    provider.fail_with = 500
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}") as http:
        done = await http.post("/dev/job", json={"action": "pay", "amount": 3, "currency": "USD"})
        assert done.status_code == 422, done.text
        assert done.json()["error"]["error_code"] == "HANDLER_ERROR"
        assert "500" in done.json()["error"]["error_message"]
        assert len(provider.charges) == 2
        assert provider.charges[0]["idempotency-key"] == provider.charges[1]["idempotency-key"]

        health = await http.get("/health")
        assert health.status_code == 503
        check = health.json()["checks"]["payment_api"]
        assert check["status"] == "RED"
        assert check["details"] == {"circuit": "open", "last_status": 500, "attempt": 2}
        metrics = (await http.get("/metrics")).text
        assert 'outbound_requests_total{service="payment_api",status_class="5xx"} 2.0' in metrics
        assert 'outbound_circuit_state{service="payment_api"} 2.0' in metrics
