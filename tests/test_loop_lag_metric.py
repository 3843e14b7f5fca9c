"""The Prometheus adapter exports the event loop's lag as ``event_loop_lag_seconds``."""

from __future__ import annotations

from usvc_http.metrics import PrometheusMetrics


def test_event_loop_lag_is_a_gauge() -> None:
    metrics = PrometheusMetrics()
    metrics.event_loop_lag(0.75)
    text = metrics.render().decode()
    assert "# TYPE event_loop_lag_seconds gauge" in text
    assert "event_loop_lag_seconds 0.75" in text
