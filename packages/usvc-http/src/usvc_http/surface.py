"""The HTTP surface: uvicorn serving the API inside the application's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

import structlog
import uvicorn
from usvc_core.errors import ConfigurationError

from usvc_http.routes import build_api
from usvc_http.settings import HttpSettings, http_settings

if TYPE_CHECKING:
    from usvc_core.surface_context import SurfaceContext

__all__ = ["HttpSurface", "http_surface"]

_log = structlog.get_logger("usvc.http")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()

    def install_signal_handlers(self) -> None:
        """The application owns SIGTERM/SIGINT; uvicorn must not take them."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Wakes HttpSurface.start the moment the server listens (it polled every 5 ms).
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_done.set()


class HttpSurface:
    """Serves ``/health``, ``/metrics`` and ``/dev/job`` on ``HTTP_HOST:HTTP_PORT``."""

    name = "http"

    def __init__(
        self, app: SurfaceContext, host: str, port: int, settings: HttpSettings | None = None
    ) -> None:
        self._app = app
        self.host = host
        self.port = port
        self._settings = settings
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they
        # are TCP, and without it every response waits ~40 ms for the client's delayed ACK.
        sock = socket.socket(
            socket.AF_INET6 if ":" in self.host else socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"cannot listen on {self.host}:{self.port} (HTTP_HOST/HTTP_PORT): {exc}"
            ) from exc
        self.port = sock.getsockname()[1]
        settings = (
            self._settings if self._settings is not None else http_settings(self._app.settings)
        )
        trusted = [a.strip() for a in settings.HTTP_TRUSTED_PROXIES.split(",") if a.strip()]
        config = uvicorn.Config(
            build_api(self._app, settings),
            # X-Forwarded-For/-Proto only from the proxies named (uvicorn's default trusts
            # 127.0.0.1, whoever runs there).
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted or None,
            log_config=None,
            access_log=False,
            lifespan="off",
            # The API has no WebSocket route: uvicorn need not look for (or, when one is
            # installed, import) a WebSocket library.
            ws="none",
            timeout_graceful_shutdown=5,
        )
        server = self._server = _Server(config)
        task = self._task = asyncio.create_task(server.serve(sockets=[sock]), name="usvc-http")
        listening = asyncio.ensure_future(server.startup_done.wait())
        try:
            await asyncio.wait([listening, task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
        if not server.started:
            await task  # raises what stopped it, if anything did
            raise ConfigurationError("the HTTP server stopped while starting")
        self._app.instance.http_port = self.port
        _log.info("http listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = None
        self._app.instance.http_port = None


def http_surface(app: SurfaceContext) -> HttpSurface | None:
    """Entry point ``usvc.surfaces: http``; None when HTTP_ENABLED=False."""
    settings = http_settings(app.settings)
    if not settings.HTTP_ENABLED:
        return None
    return HttpSurface(app, settings.HTTP_HOST, settings.HTTP_PORT, settings)
