"""CPU per ``POST /dev/job`` of the ASGI app alone, kit and bare FastAPI: the app called
directly (no socket, no uvicorn, no h11: those are the same on both sides), thread CPU per
call, the minimum and the median of ``--rounds`` rounds of ``--calls`` calls each.

    uv run python bench/devjob_asgi.py                         # kit, kit at WARNING, floor
    uv run python bench/devjob_asgi.py kit --profile 40        # and the kit's costliest functions
    uv run python bench/devjob_asgi.py --repeat 5 --callgrind 400   # alternating; instructions

The kit is the bench service (``bench/service``) in dev mode, default logging (its INFO
"job completed" console line per job goes to /dev/null); ``kit-warning`` is the same at
WARNING (no line: the price of that promise); each kind runs in its own process, and
``--repeat`` runs each kind that many times in alternating order (the medians of the
processes' minimums and medians). ``--callgrind N`` adds instructions per request from
``valgrind --tool=callgrind``: a process making N calls minus one making none, both after
the same warm-up, divided by N (deterministic, unlike CPU time on a shared machine).
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
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from procs import callgrind_instructions  # noqa: E402

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


KINDS = ("bare", "kit", "kit-warning")
_WARMUP = 200


async def _kit_app(level: int | None = None) -> tuple[ASGIApp, Callable[[], Awaitable[None]]]:
    os.environ.update(
        MICROSERVICE_NAME="bench", DEV_MODE="True", HTTP_HOST="127.0.0.1", HTTP_PORT="0"
    )
    os.chdir(BENCH / "service")
    import usvc_core.app as app_module
    from usvc_core import Application
    from usvc_http.routes import build_api

    if level is not None:
        # The kit offers no log-level setting: the app's own configure_logging call, at
        # ``level`` (WARNING drops the INFO "job completed" line), patched in this process.
        import functools

        configured = functools.partial(app_module.configure_logging, level=level)
        setattr(app_module, "configure_logging", configured)  # noqa: B010

    app = Application()
    await app.start()
    return build_api(app.surface_context()), app.stop


async def _app(kind: str) -> tuple[ASGIApp, Callable[[], Awaitable[None]]]:
    import logging

    if kind != "bare":
        return await _kit_app(logging.WARNING if kind == "kit-warning" else None)
    from bare_fastapi import build_api

    async def stop() -> None:
        return None

    return build_api(), stop


async def _calls_only(kind: str, calls: int) -> None:
    """The warm-up, then ``calls`` calls: what ``--callgrind`` counts (minus ``calls=0``)."""
    api, stop = await _app(kind)
    for _ in range(_WARMUP + calls):
        assert await _call(api) == 200
    await stop()


async def _measure(kind: str, rounds: int, calls: int, profile: int) -> dict[str, Any]:
    api, stop = await _app(kind)
    for _ in range(_WARMUP):
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


def _instructions(kind: str, calls: int) -> float:
    """Instructions per call of ``kind``'s ASGI app under callgrind: ``calls`` calls minus
    none, the same warm-up and start-up in both processes."""
    collected = []
    with tempfile.TemporaryDirectory(prefix="usvc-bench-devjob-cg-") as tmp:
        for n in (calls, 0):
            argv = [sys.executable, __file__, kind, "--calls-only", str(n)]
            collected.append(callgrind_instructions(argv, f"{tmp}/{n}.cg"))
    return (collected[0] - collected[1]) / calls


def _compare(args: argparse.Namespace) -> None:
    """Every kind in its own process, ``--repeat`` times in alternating order; a summary."""
    reports: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for n in range(args.repeat):
        for kind in KINDS if n % 2 == 0 else tuple(reversed(KINDS)):
            command = [sys.executable, __file__, kind, "--rounds", str(args.rounds),
                       "--calls", str(args.calls), "--profile", str(args.profile)]  # fmt: skip
            command.append("--json")
            child = subprocess.run(command, check=True, capture_output=True, text=True)
            report = json.loads(child.stdout.splitlines()[-1])
            reports[kind].append(report)
            if not args.json:
                print(_line(kind, report, args.rounds, args.calls))
                for line in report["top"]:
                    print("  " + line)
    summary: dict[str, dict[str, float]] = {}
    for kind, rows in reports.items():
        summary[kind] = {
            "min_us": statistics.median(r["min_us"] for r in rows),
            "median_us": statistics.median(r["median_us"] for r in rows),
        }
    if args.callgrind:
        for kind in KINDS:
            summary[kind]["instructions"] = _instructions(kind, args.callgrind)
    if args.json:
        print(json.dumps({"load_average": os.getloadavg()[0], "kinds": summary}))
        return
    bare = summary["bare"]
    print(
        f"\nmedians of {args.repeat} processes per kind (load average now "
        f"{os.getloadavg()[0]:.1f}); ratios to bare FastAPI's app"
    )
    for kind, row in summary.items():
        print(
            f"{kind:12} min {row['min_us']:6.1f} µs ({row['min_us'] / bare['min_us']:.2f}x)"
            f"  median {row['median_us']:6.1f} µs ({row['median_us'] / bare['median_us']:.2f}x)"
            + (
                f"  {row['instructions'] / 1000:6.1f}k instructions"
                f" ({row['instructions'] / bare['instructions']:.2f}x)"
                if "instructions" in row
                else ""
            )
        )


def _line(kind: str, report: dict[str, Any], rounds: int, calls: int) -> str:
    return (
        f"{kind}: ASGI app CPU per call: min {report['min_us']:.1f} µs, "
        f"median {report['median_us']:.1f} µs ({rounds} rounds of {calls})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("kind", nargs="?", choices=KINDS)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--profile", type=int, default=0, help="show the N costliest functions")
    parser.add_argument("--repeat", type=int, default=1, help="processes per kind, alternating")
    parser.add_argument("--callgrind", type=int, default=0, help="instructions per call, N calls")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--calls-only", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind is None:
        _compare(args)
        return
    out = sys.stdout
    if args.kind != "bare":
        # The service logs to stdout (its INFO line per job is part of the cost): to nowhere.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the process's whole life
    if args.calls_only is not None:
        asyncio.run(_calls_only(args.kind, args.calls_only))
        return
    report = asyncio.run(_measure(args.kind, args.rounds, args.calls, args.profile))
    sys.stdout = out
    if args.json:
        print(json.dumps(report))
        return
    print(_line(args.kind, report, args.rounds, args.calls))
    for line in report["top"]:
        print("  " + line)


if __name__ == "__main__":
    main()
