"""The REST API service template: an httpx client with rate limiting, a circuit breaker,
timeouts, retries, health reporting and outbound Prometheus metrics."""

from usvc_http.rest.config import RestAPIConfig, env_prefix_for
from usvc_http.rest.metrics import OutboundMetrics
from usvc_http.rest.retry_after import parse_retry_after
from usvc_http.rest.service import (
    IDEMPOTENT_METHODS,
    AsyncTransport,
    RestAPIService,
    TransportError,
)

__all__ = [
    "IDEMPOTENT_METHODS",
    "AsyncTransport",
    "OutboundMetrics",
    "RestAPIConfig",
    "RestAPIService",
    "TransportError",
    "env_prefix_for",
    "parse_retry_after",
]
