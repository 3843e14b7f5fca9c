"""A transport that opens its connection pools on first use, one per URL scheme.

``httpx.AsyncClient()`` builds its transport at once: httpcore's import (≈ 90 ms) and a
verified SSL context (certifi's bundle: ≈ 30-120 ms, 3 MB) for every client, even one that
only calls ``http://`` URLs, or none before the first job. Here the plain pool is built on
the first ``http://`` request and the TLS pool, with its context built on a thread, on the
first ``https://`` one: start-up pays for neither, and an ``http://`` client never loads
the certificate bundle.
"""

from __future__ import annotations

import asyncio

import httpx

__all__ = ["LazyTransport"]


class LazyTransport(httpx.AsyncBaseTransport):
    """Dispatches each request by scheme to a pool built on first use (same ``limits``)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}
        self._building = asyncio.Lock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tls = request.url.scheme == "https"
        pool = self._pools.get("https" if tls else "http")
        if pool is None:
            pool = await self._build(tls)
        return await pool.handle_async_request(request)

    async def _build(self, tls: bool) -> httpx.AsyncHTTPTransport:
        key = "https" if tls else "http"
        async with self._building:
            pool = self._pools.get(key)
            if pool is None:
                # verify=False for the plain pool: it never speaks TLS (https goes to the
                # other pool) and skips loading the certificate bundle.
                verify = await asyncio.to_thread(httpx.create_ssl_context) if tls else False
                pool = self._pools[key] = httpx.AsyncHTTPTransport(
                    verify=verify, limits=self._limits
                )
            return pool

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
