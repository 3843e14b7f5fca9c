"""usvc HTTP: ``/health``, ``/metrics``, ``/dev/job`` on FastAPI + uvicorn, Prometheus metrics,
and the ``RestAPIService`` client template."""

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
