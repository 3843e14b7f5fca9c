"""CPU per ``POST /dev/job`` of the ASGI app alone, kit and bare FastAPI: the app called
directly (no socket, no uvicorn, no h11: those are the same on both sides), thread CPU per
call, the minimum and the median of ``--rounds`` rounds of ``--calls`` calls each.

    uv run python bench/devjob_asgi.py                         # kit and floor
    uv run python bench/devjob_asgi.py kit --profile 40        # and the kit's costliest functions

The kit is the bench service (``bench/service``) in dev mode, default logging (its INFO
"job completed" console line per job goes to /dev/null); each kind runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

__all__ = ["main"]

_BODY = json.dumps({"action": "noop", "n": 1, "name": "bench"}).encode()
_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "scheme": "http",
    "method": "POST",
    "root_path": "",
    "path": "/dev/job",
    "raw_path": b"/dev/job",
    "query_string": b"",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"*/*"),
        (b"content-length", str(len(_BODY)).encode()),
        (b"content-type", b"application/json"),
    ],
}

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


async def _call(app: ASGIApp) -> int:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": _BODY, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(dict(_SCOPE), receive, send)
    return int(sent[0]["status"])


async def _kit_app() -> tuple[ASGIApp, Callable[[], Awaitable[None]]]:
    os.environ.update(
        MICROSERVICE_NAME="bench", DEV_MODE="True", HTTP_HOST="127.0.0.1", HTTP_PORT="0"
    )
    os.chdir(BENCH / "service")
    from usvc_core import Application
    from usvc_http.routes import build_api

    app = Application()
    await app.start()
    return build_api(app.surface_context()), app.stop


async def _measure(kind: str, rounds: int, calls: int, profile: int) -> dict[str, Any]:
    if kind == "kit":
        api, stop = await _kit_app()
    else:
        from bare_fastapi import build_api

        api = build_api()

        async def stop() -> None:
            return None

    for _ in range(200):  # warm-up
        assert await _call(api) == 200
    per_call = []
    gc.collect()
    for _ in range(rounds):
        began = time.thread_time()
        for _ in range(calls):
            await _call(api)
        per_call.append((time.thread_time() - began) / calls * 1e6)
    top: list[str] = []
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            await _call(api)
        profiler.disable()
        stats = pstats.Stats(profiler)
        rows = []
        total_calls = 0
        for (filename, line, func), (_cc, ncalls, tottime, cum, _c) in stats.stats.items():  # type: ignore[attr-defined]
            total_calls += ncalls
            where = "/".join(filename.split("/")[-2:])
            rows.append((tottime, ncalls, cum, f"{func} ({where}:{line})"))
        rows.sort(reverse=True)
        top.append(f"{total_calls / calls:.1f} Python calls per request (profiled)")
        for t, n, c, name in rows[:profile]:
            top.append(f"{n / calls:6.2f} {t / calls * 1e6:8.2f} {c / calls * 1e6:8.2f}  {name}")
    await stop()
    return {
        "kind": kind,
        "min_us": min(per_call),
        "median_us": statistics.median(per_call),
        "top": top,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("kind", nargs="?", choices=["kit", "bare"])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--profile", type=int, default=0, help="show the N costliest functions")
    args = parser.parse_args()
    if args.kind is None:
        for kind in ("bare", "kit"):
            command = [sys.executable, __file__, kind, "--rounds", str(args.rounds),
                       "--calls", str(args.calls), "--profile", str(args.profile)]  # fmt: skip
            subprocess.run(command, check=True)
        return
    out = sys.stdout
    if args.kind == "kit":
        # The service logs to stdout (its INFO line per job is part of the cost): to nowhere.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the process's whole life
    report = asyncio.run(_measure(args.kind, args.rounds, args.calls, args.profile))
    sys.stdout = out
    print(
        f"{args.kind}: ASGI app CPU per call: min {report['min_us']:.1f} µs, "
        f"median {report['median_us']:.1f} µs ({args.rounds} rounds of {args.calls})"
    )
    for line in report["top"]:
        print("  " + line)


if __name__ == "__main__":
    main()
