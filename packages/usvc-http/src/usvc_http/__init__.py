"""usvc HTTP: ``/health``, ``/metrics``, ``/dev/job`` on FastAPI + uvicorn, Prometheus metrics,
and the ``RestAPIService`` client template.

The public names are imported on first use (PEP 562): ``import usvc_http`` alone loads
neither FastAPI nor httpx, so a worker that only needs the REST client, or the metrics,
does not pay for the server's imports at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from usvc_core.lazy_names import lazy_names

if TYPE_CHECKING:
    from usvc_http.metrics import PrometheusMetrics
    from usvc_http.rest import RestAPIConfig, RestAPIService
    from usvc_http.routes import build_api
    from usvc_http.settings import HttpSettings
    from usvc_http.surface import HttpSurface, http_surface

__version__ = "0.1.0"

__all__ = [
    "HttpSettings",
    "HttpSurface",
    "PrometheusMetrics",
    "RestAPIConfig",
    "RestAPIService",
    "build_api",
    "http_surface",
]

#: Where each public name lives.
_WHERE = {
    "HttpSettings": "usvc_http.settings",
    "HttpSurface": "usvc_http.surface",
    "PrometheusMetrics": "usvc_http.metrics",
    "RestAPIConfig": "usvc_http.rest",
    "RestAPIService": "usvc_http.rest",
    "build_api": "usvc_http.routes",
    "http_surface": "usvc_http.surface",
}


__getattr__, __dir__ = lazy_names(__name__, _WHERE)
