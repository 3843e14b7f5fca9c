"""Where the time goes: samples a case with py-spy and prints each function's share.

    uv tool install py-spy                              # once; a sampling profiler
    uv run python bench/hotspots.py inmemory --jobs 60000
    uv run python bench/hotspots.py inmemory-logs
    uv run python bench/hotspots.py devjob --requests 1000
    uv run python bench/hotspots.py inmemory --lines execute_job   # one function, by line

Shares are of the samples taken while the measured work runs: for the drains, the event
loop's work after start-up (imports, enqueueing and shutdown are left out); for the dev job,
the service process's busy samples while the client sends its requests (``select`` waits
left out). "incl" counts a function with everything it calls, "self" only its own lines.
The raw collapsed stacks are kept next to the JSON results, for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import BENCH, child_env
from procs import ServerProcess

_FRAME = re.compile(r"(?P<func>.*?) \((?P<file>.*?):(?P<line>\d+)\)$")
_SETUP = ("drain_kit (", "importlib", "Application.start", "Application.stop", "<frozen ")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path.home() / ".local" / "bin" / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: uv tool install py-spy")
    return found


def _label(frame: str, with_line: bool = False) -> str:
    m = _FRAME.match(frame)
    if m is None:
        return frame
    where = "/".join(m["file"].split("/")[-2:])
    return f"{m['func']} ({where}:{m['line']})" if with_line else f"{m['func']} ({where})"


def summarize(raw: Path, keep: Callable[[list[str]], bool], top: int, lines_of: str | None) -> str:
    """Inclusive and self shares of the kept samples of a py-spy ``raw`` file."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    by_line: collections.Counter[str] = collections.Counter()
    total = 0
    for row in raw.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        frames = stack.split(";")
        if not keep(frames):
            continue
        n = int(count)
        total += n
        for name in {_label(f) for f in frames}:
            inclusive[name] += n
        own[_label(frames[-1])] += n
        if lines_of:
            inner = next((f for f in reversed(frames) if f.startswith(lines_of + " (")), None)
            if inner is not None:
                by_line[_label(inner, with_line=True)] += n
    if not total:
        return "no samples kept"
    out = [f"{total} samples kept", "", "  incl  function"]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in inclusive.most_common(top)]
    out += ["", "  self  function"]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in own.most_common(top // 2)]
    if lines_of:
        out += ["", f"  incl  {lines_of}, by line"]
        out += [f"{100 * v / total:5.1f}%  {k}" for k, v in by_line.most_common(top // 2)]
    return "\n".join(out)


def _in_drain(frames: list[str]) -> bool:
    return any("_run_once" in f for f in frames) and not any(s in f for f in frames for s in _SETUP)


def _busy(frames: list[str]) -> bool:
    return not frames[-1].startswith(("EpollSelector.select", "select (")) and not any(
        s in f for f in frames for s in ("importlib", "<frozen ")
    )


def profile_drain(mode: str, jobs: int, raw: Path, rate: int) -> None:
    subprocess.run(
        [_py_spy(), "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--",
         sys.executable, str(BENCH / "drain.py"), mode, "--jobs", str(jobs)],
        env=child_env(),
        check=True,
    )  # fmt: skip


def profile_devjob(requests: int, raw: Path, rate: int) -> None:
    env = {"MICROSERVICE_NAME": "bench", "DEV_MODE": "True"}
    with ServerProcess(BENCH / "service", "main.py", env) as svc:
        svc.wait_healthy()
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        body = {"action": "noop", "n": 1, "name": "bench"}
        with httpx.Client(base_url=svc.url, transport=transport, timeout=30) as client:
            for _ in range(50):
                client.post("/dev/job", json=body)
            spy = subprocess.Popen(
                [_py_spy(), "record", "-r", str(rate), "-f", "raw", "-o", str(raw),
                 "--pid", str(svc.proc.pid)],
            )  # fmt: skip
            try:
                time.sleep(1.0)  # py-spy attaches
                for _ in range(requests):
                    client.post("/dev/job", json=body).raise_for_status()
            finally:
                os.kill(spy.pid, signal.SIGINT)
                spy.wait(60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("case", choices=["inmemory", "inmemory-logs", "devjob"])
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--lines", help="also break this function down by line")
    parser.add_argument("--raw", type=Path, help="where to keep the collapsed stacks")
    args = parser.parse_args(argv)
    raw: Path = args.raw or BENCH / "results" / f"profile-{args.case}.raw"
    raw.parent.mkdir(parents=True, exist_ok=True)
    if args.case == "devjob":
        profile_devjob(args.requests, raw, args.rate)
        keep = _busy
    else:
        mode = "kit" if args.case == "inmemory" else "kit-logs"
        profile_drain(mode, args.jobs, raw, args.rate)
        keep = _in_drain
    print(summarize(raw, keep, args.top, args.lines))
    print(f"\ncollapsed stacks: {raw}")


if __name__ == "__main__":
    main()
