"""A client for the payment provider's REST API, written like the spec's example.

Deploy-time settings come from the environment, e.g. ``PAYMENT_API_BASE_URL``.
"""

from typing import Any

from usvc_http import RestAPIConfig, RestAPIService


class PaymentAPI(RestAPIService):
    name = "payment_api"  # the /health check's name and the PAYMENT_API_ env prefix
    config = RestAPIConfig(
        BASE_URL="https://payments.example.com",
        RATE_LIMIT_REQUESTS=50,
        RATE_LIMIT_WINDOW_SECONDS=60.0,
        CB_FAILURE_THRESHOLD=5,
        CB_RECOVERY_TIMEOUT=30.0,
        MAX_RETRIES=3,
    )

    async def charge(
        self, amount: float, currency: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        # A POST is retried only with an idempotency key: without one, a retry after a
        # lost answer could charge the customer twice.
        response = await self.request(
            "POST",
            f"{self.config.BASE_URL}/charges",
            json={"amount": amount, "currency": currency},
            idempotency_key=idempotency_key,
        )
        response.raise_for_status()
        charge: dict[str, Any] = response.json()
        return charge
