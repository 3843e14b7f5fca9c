"""Resilience primitives: retry policy, circuit breaker, rate limiter."""

from usvc_core.resilience.retry import RetryPolicy

__all__ = ["RetryPolicy"]
