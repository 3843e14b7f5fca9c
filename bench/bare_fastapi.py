"""The dev-job latency floor: a bare FastAPI app whose ``POST /dev/job`` parses the JSON body
and returns the body a completed no-op job gets from the kit, with no queue and no worker.

It is served as plain uvicorn serves an app (uvicorn binds the socket itself) on the default
asyncio loop, with the kit's uvicorn options (no access log, no lifespan), so the two differ
only in what happens between the socket and the endpoint's answer. Run as
``python bench/bare_fastapi.py`` with ``HTTP_HOST``/``HTTP_PORT``.
"""

from __future__ import annotations

import asyncio
import json
import os

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["build_api"]


def build_api() -> FastAPI:
    api = FastAPI(docs_url=None, redoc_url=None)
    counter = iter(range(1, 1 << 62))

    @api.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "GREEN", "checks": {}})

    @api.post("/dev/job", response_model=None)
    async def dev_job(request: Request) -> JSONResponse:
        payload = json.loads(await request.body())
        if not isinstance(payload, dict):
            return JSONResponse({"detail": "not an object"}, status_code=422)
        body = {
            "job_id": f"dev-{next(counter)}",
            "status": "Completed",
            "results": None,
            "error": None,
            "runtime_ms": 0.01,
        }
        return JSONResponse(body)

    return api


async def serve(host: str, port: int) -> None:
    config = uvicorn.Config(
        build_api(), host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    asyncio.run(serve(os.environ.get("HTTP_HOST", "127.0.0.1"), int(os.environ["HTTP_PORT"])))
