"""Resilience primitives: retry policy, circuit breaker, rate limiter (injectable clock)."""

from usvc_core.errors import CircuitOpenError
from usvc_core.resilience.circuit_breaker import CircuitBreaker, CircuitState
from usvc_core.resilience.rate_limiter import RateLimiter
from usvc_core.resilience.retry import RetryPolicy

__all__ = ["CircuitBreaker", "CircuitOpenError", "CircuitState", "RateLimiter", "RetryPolicy"]
