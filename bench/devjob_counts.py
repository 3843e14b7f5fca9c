"""Deterministic per-request counts of ``POST /dev/job`` in the serving process, next to the
bare FastAPI floor: event-loop iterations and callbacks (the ``await`` hops that suspend),
Python function calls by layer (cProfile on the loop's thread), and the largest ones.

    uv run python bench/devjob_counts.py --requests 500            # kit and floor
    uv run python bench/devjob_counts.py --requests 500 --top 30   # and the costliest functions

Server and client share one process: the server on the main thread's event loop, the
client (httpx, one keep-alive connection, TCP_NODELAY) on a thread. Only the server's
thread is profiled, and only while the measured requests run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import os
import pstats
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from counts import layer_of  # noqa: E402
from procs import free_port  # noqa: E402

__all__ = ["count_requests"]

_LAYERS = (
    ("usvc-http", "usvc_http/"),
    ("fastapi", "fastapi/"),
    ("starlette", "starlette/"),
    ("uvicorn", "uvicorn/"),
    ("h11", "h11/"),
    ("prometheus", "prometheus_client/"),
)
_BODY = {"action": "noop", "n": 1, "name": "bench"}


def _layer(filename: str) -> str:
    for layer, fragment in _LAYERS:
        if fragment in filename:
            return layer
    if "usvc_core/app.py" in filename:
        return "app (enqueue, wait)"
    return layer_of(filename)


def _client(port: int, warmup: int, requests: int) -> None:
    """The client process: warm-up calls, then ``start``, the measured calls, ``stop``."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, transport=transport, timeout=30) as client:
        for _ in range(500):
            try:
                client.get("/health")
                break
            except httpx.TransportError:
                threading.Event().wait(0.02)
        for _ in range(warmup):
            client.post("/dev/job", json=_BODY).raise_for_status()
        print("start", flush=True)
        # Measured from the first request on: the server says when its profiler is on.
        sys.stdin.readline()
        for _ in range(requests):
            client.post("/dev/job", json=_BODY).raise_for_status()
        print("stop", flush=True)


async def _serve(kind: str, port: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Start the server of ``kind``; returns (wait until it stops, ask it to stop)."""
    if kind == "bare":
        import uvicorn
        from bare_fastapi import build_api

        config = uvicorn.Config(
            build_api(), host="127.0.0.1", port=port, log_config=None, access_log=False,
            lifespan="off",
        )  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())

        def stop_bare() -> None:
            server.should_exit = True

        return lambda: task, stop_bare
    os.environ.update(
        MICROSERVICE_NAME="bench", DEV_MODE="True", HTTP_HOST="127.0.0.1", HTTP_PORT=str(port)
    )
    os.chdir(BENCH / "service")
    from usvc_core import Application

    app = Application()
    task = asyncio.create_task(app.serve())
    return lambda: task, app.request_stop


async def _measure(kind: str, warmup: int, requests: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    port = free_port()
    task, stop = await _serve(kind, port)
    profiler = cProfile.Profile()
    iterations = [0]
    original = loop._run_once  # type: ignore[attr-defined]

    def counting_run_once() -> None:
        iterations[0] += 1
        original()

    done = asyncio.Event()

    def mark(what: str) -> None:
        def on_loop() -> None:
            if what == "start":
                loop._run_once = counting_run_once  # type: ignore[attr-defined]
                profiler.enable()
                assert client.stdin is not None
                client.stdin.write("go\n")
                client.stdin.flush()
            else:
                profiler.disable()
                loop._run_once = original  # type: ignore[attr-defined]
                done.set()

        loop.call_soon_threadsafe(on_loop)

    # The client is another process: in 3.12 cProfile sees every thread of its own.
    command = [sys.executable, __file__, "--client", str(port), "--warmup", str(warmup),
               "--requests", str(requests)]  # fmt: skip
    client = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220 - started once, before measuring

    def relay() -> None:
        assert client.stdout is not None
        for line in client.stdout:
            mark(line.strip())

    threading.Thread(target=relay, daemon=True).start()
    await done.wait()
    stop()
    await task()
    client.wait(10)
    stats = pstats.Stats(profiler)
    layers: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    callbacks = 0
    rows = []
    for (filename, line, func), (_cc, ncalls, tottime, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        layer = _layer(filename)
        layers[layer][0] += ncalls
        layers[layer][1] += tottime
        if func == "_run" and filename.endswith("asyncio/events.py"):
            callbacks += ncalls
        rows.append((tottime, ncalls, f"{func} ({'/'.join(filename.split('/')[-2:])}:{line})"))
    rows.sort(reverse=True)
    return {
        "kind": kind,
        "requests": requests,
        "loop_iterations_per_request": iterations[0] / requests,
        "loop_callbacks_per_request": callbacks / requests,
        "calls_per_request": sum(v[0] for v in layers.values()) / requests,
        "layers": {
            name: {"calls": c / requests, "profiled_us": t / requests * 1e6}
            for name, (c, t) in sorted(layers.items(), key=lambda kv: -kv[1][1])
        },
        "top": [
            {"function": name, "calls": n / requests, "profiled_us": t / requests * 1e6}
            for t, n, name in rows[:40]
        ],
    }


def count_requests(kind: str, warmup: int, requests: int) -> dict[str, Any]:
    if kind == "kit":
        # The service logs to stdout (its INFO line per job is part of the cost): to nowhere.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the process's whole life
    return asyncio.run(_measure(kind, warmup, requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("kind", nargs="?", choices=["kit", "bare"])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        _client(args.client, args.warmup, args.requests)
        return
    if args.kind is None:  # each in its own process: the kit's imports and logging apart
        import subprocess

        for kind in ("bare", "kit"):
            command = [sys.executable, __file__, kind, "--requests", str(args.requests),
                       "--warmup", str(args.warmup), "--top", str(args.top)]  # fmt: skip
            subprocess.run(command + (["--json"] if args.json else []), check=True)
        return
    out = sys.stdout
    report = count_requests(args.kind, args.warmup, args.requests)
    sys.stdout = out
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.kind}: {report['requests']} requests: {report['calls_per_request']:.0f} calls, "
        f"{report['loop_iterations_per_request']:.2f} loop iterations, "
        f"{report['loop_callbacks_per_request']:.2f} loop callbacks per request"
    )
    for name, row in report["layers"].items():
        print(f"  {name:22} {row['calls']:8.1f} calls {row['profiled_us']:9.1f} µs (profiled)")
    for row in report["top"][: args.top]:
        print(f"  {row['calls']:6.1f} {row['profiled_us']:8.1f}  {row['function']}")


if __name__ == "__main__":
    main()
