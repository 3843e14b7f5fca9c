"""The benchmark cases. Each fills a :class:`CaseResult` with one sample per repetition of
every figure, and the floor it is compared with measured in the same repetition."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cli_startup import case as cli_case
from harness import (
    BENCH,
    ROOT,
    CaseResult,
    CaseUnavailableError,
    Target,
    child_env,
    child_json,
)
from procs import ServerProcess
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["CASES", "Case", "Options"]

#: The example service of the checkout being measured (``compare`` points this at each
#: revision's worktree; its own example is part of what a revision is).
EXAMPLE = Path(os.environ.get("USVC_BENCH_TARGET") or ROOT) / "examples" / "greeting"
SERVICE = BENCH / "service"
SQLITE_DRAIN = BENCH / "sqlite_drain.py"
NOOP_BODY = {"action": "noop", "n": 1, "name": "bench"}


@dataclass(frozen=True, slots=True)
class Options:
    """Sizes of one harness run (``--quick`` shrinks them to a smoke run)."""

    repeat: int = 5
    jobs: int = 20_000  #: in-memory and SQLite drains, in-memory enqueue
    requests: int = 2_000  #: sequential POST /dev/job calls
    warmup: int = 100  #: calls before the timed ones
    memory_jobs: int = 10_000  #: jobs queued for the peak-RSS case
    sqlite_enqueue_jobs: int = 2_000  #: SQLite one-by-one enqueue is one durable commit each
    sqlite_jobs: int = 5_000  #: SQLite drains (the kit, its prototype, the bare loop)
    depth: int = 500_000  #: Ready jobs in the deep queue of the depth case
    batch: int = 100  #: enqueue_many batch size
    quick: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    description: str
    run: Callable[[Options, CaseResult], None]


# --- in-memory throughput ----------------------------------------------------------------


def _drain(modes: list[str], jobs: int, timeout: float) -> dict[str, dict[str, float]]:
    lines = child_json(["bench/drain.py", *modes, "--jobs", str(jobs)], timeout)
    return {line["mode"]: line for line in lines}


# Wall-clock rates depend on what else the shared machine runs; rates per CPU-second of the
# measuring process much less so. Targets are on the wall rates.
_CPU_NOTE = "jobs per CPU-second of the process (less sensitive to a shared machine)"


def inmemory(opts: Options, result: CaseResult) -> None:
    fig = result.figure(
        "throughput",
        "jobs/s",
        floor_name="bare asyncio loop: validate + await handler, 10 at a time",
        targets=(Target("min", 0.25, "ratio"),),
    )
    cpu = result.figure("throughput per CPU-second", "jobs/cpu-s", floor_name=_CPU_NOTE)
    for rep in range(opts.repeat):
        # Alternate the order so neither side always runs on a colder process.
        modes = ["floor", "kit"] if rep % 2 == 0 else ["kit", "floor"]
        runs = _drain(modes, opts.jobs, timeout=300)
        fig.add(runs["kit"]["jobs_per_s"], runs["floor"]["jobs_per_s"])
        cpu.add(runs["kit"]["jobs_per_cpu_s"], runs["floor"]["jobs_per_cpu_s"])
    result.details["jobs"] = opts.jobs


def inmemory_logs(opts: Options, result: CaseResult) -> None:
    fig = result.figure(
        "throughput, INFO JSON logs to a file",
        "jobs/s",
        floor_name="the in-memory case (log level WARNING)",
        targets=(Target("min", 10_000),),
    )
    cpu = result.figure("throughput per CPU-second, INFO logs", "jobs/cpu-s", floor_name=_CPU_NOTE)
    for rep in range(opts.repeat):
        order = [["kit"], ["kit-logs"]] if rep % 2 == 0 else [["kit-logs"], ["kit"]]
        runs: dict[str, dict[str, float]] = {}
        for modes in order:
            runs.update(_drain(modes, opts.jobs, timeout=300))
        fig.add(runs["kit-logs"]["jobs_per_s"], runs["kit"]["jobs_per_s"])
        cpu.add(runs["kit-logs"]["jobs_per_cpu_s"], runs["kit"]["jobs_per_cpu_s"])
    result.details["jobs"] = opts.jobs


# --- SQLite --------------------------------------------------------------------------------


def _sqlite_unavailable() -> str | None:
    """Why the SQLite cases cannot run here, or None when they can."""
    if not SQLITE_DRAIN.exists():
        return (
            "SQLite queue not available: bench/sqlite_drain.py is not on this branch yet "
            "(it comes with the SQLite queue, branch sqlite)"
        )
    lines = child_json(["bench/enqueue.py", "sqlite", "--sqlite-jobs", "1"], timeout=60)
    if lines and "unavailable" in lines[0]:
        return f"SQLite queue not available: {lines[0]['unavailable']}"
    return None


def sqlite(opts: Options, result: CaseResult) -> None:
    missing = _sqlite_unavailable()
    if missing:
        raise CaseUnavailableError(missing)
    fig = result.figure(
        "throughput, durable (outcomes flushed before they return)",
        "jobs/s",
        floor_name="prototype of the same design, no kit (bench/sqlite_prototype.py)",
        targets=(Target("min", 1.0, "ratio"),),
    )
    bare = result.figure(
        "the same throughput against a bare loop",
        "jobs/s",
        floor_name="the adapter's statements in a bare blocking sqlite3 loop, batches of 10",
    )
    cpu = result.figure(
        "worker process CPU per job",
        "µs",
        floor_name="the prototype's CPU per job (load- and disk-independent)",
    )
    commits = []
    for _ in range(opts.repeat):
        (line,) = child_json(
            ["bench/sqlite_drain.py", "--jobs", str(opts.sqlite_jobs), "--json"], timeout=900
        )
        e2e = float(line["end_to_end_jobs_per_second"])
        fig.add(e2e, float(line["prototype_jobs_per_second"]))
        bare.add(e2e, float(line["floor_jobs_per_second"]))
        if line.get("end_to_end_cpu_us_per_job") and line.get("prototype_cpu_us_per_job"):
            cpu.add(sum(line["end_to_end_cpu_us_per_job"]), line["prototype_cpu_us_per_job"])
        if line.get("transactions"):
            commits.append(opts.sqlite_jobs / float(line["transactions"]))
    result.details["jobs"] = opts.sqlite_jobs
    if commits:
        result.details["jobs_per_commit_median"] = statistics.median(commits)


def sqlite_depth(opts: Options, result: CaseResult) -> None:
    missing = _sqlite_unavailable()
    if missing:
        raise CaseUnavailableError(missing)
    fig = result.figure(
        f"drain, {opts.depth:,} Ready jobs deep",
        "jobs/s",
        floor_name=f"the same {opts.sqlite_jobs:,} jobs from a shallow queue, before and after",
        targets=(Target("min", 0.9, "ratio"),),
    )
    for _ in range(opts.repeat):
        args = ["--jobs", str(opts.sqlite_jobs), "--depth", str(opts.depth), "--json"]
        (line,) = child_json(["bench/sqlite_drain.py", *args], timeout=900)
        fig.add(float(line["deep_jobs_per_second"]), float(line["shallow_jobs_per_second"]))
    result.details.update(jobs=opts.sqlite_jobs, depth=opts.depth)


#: The PostgreSQL depth case's script: it takes ``--jobs N --depth D --json`` and prints
#: one line with ``shallow_jobs_per_second`` and ``deep_jobs_per_second`` (what
#: ``bench/sqlite_drain.py --depth`` prints for SQLite), and the CPU per job on each side.
POSTGRES_DEPTH = BENCH / "postgres_depth.py"


def postgres_depth(opts: Options, result: CaseResult) -> None:
    if not POSTGRES_DEPTH.exists():
        raise CaseUnavailableError(
            "PostgreSQL depth case not available: bench/postgres_depth.py is not on this branch"
        )
    fig = result.figure(
        f"drain, {opts.depth:,} Ready jobs deep (PostgreSQL)",
        "jobs/s",
        floor_name=f"the same {opts.sqlite_jobs:,} jobs from a shallow queue",
        targets=(Target("min", 0.9, "ratio"),),
    )
    # What each job cost the worker process and the whole server, deep against shallow:
    # CPU time moves much less than the rates when other work shares the machine.
    cpu = {
        "cpu_us_per_job": result.figure(
            "worker process CPU per job, deep", "µs", floor_name="the same, shallow"
        ),
        "server_cpu_us_per_job": result.figure(
            "PostgreSQL server CPU per job, deep (its stats() sample included)",
            "µs",
            floor_name="the same, shallow",
        ),
    }
    for _ in range(opts.repeat):
        args = ["--jobs", str(opts.sqlite_jobs), "--depth", str(opts.depth), "--json"]
        lines = child_json(["bench/postgres_depth.py", *args], timeout=900)
        if lines and "unavailable" in lines[0]:
            raise CaseUnavailableError(f"PostgreSQL not available: {lines[0]['unavailable']}")
        (line,) = lines
        fig.add(float(line["deep_jobs_per_second"]), float(line["shallow_jobs_per_second"]))
        for key, figure in cpu.items():
            if line.get(f"deep_{key}") and line.get(f"shallow_{key}"):
                figure.add(float(line[f"deep_{key}"]), float(line[f"shallow_{key}"]))
    result.figures = [f for f in result.figures if f.samples]
    result.details.update(jobs=opts.sqlite_jobs, depth=opts.depth)


async def _sqlite_drain_workers(workers: int, jobs: int, directory: Path) -> float:
    """Jobs/s of ``workers`` bench service processes draining ``jobs`` from one file."""
    from enqueue import make_queue
    from usvc_core import EnqueueRequest, JobStatus

    db = directory / f"scale-{workers}.db"
    env = {
        "MICROSERVICE_NAME": "bench",
        "QUEUE_URL": f"sqlite:///{db}",
        "DEV_MODE": "False",
        "MAX_CONCURRENT_JOBS": "10",
        # Other processes' enqueues do not wake a worker: poll often while idle.
        "POLLING_INTERVAL_SECONDS": "0.05",
        "LOG_CONSOLE_JSON": "True",  # as in production
    }
    queue = make_queue("sqlite", directory, db.stem)
    await queue.open()  # creates the schema before the workers race to it
    procs = [ServerProcess(SERVICE, "main.py", env) for _ in range(workers)]
    try:
        for proc in procs:
            await asyncio.to_thread(proc.wait_healthy)
        requests = [
            EnqueueRequest({"action": "noop", "n": i, "name": "bench"}, "bench")
            for i in range(jobs)
        ]
        # One transaction: every job becomes visible to the workers at the same moment.
        await queue.enqueue_many(requests)
        started = time.perf_counter()
        deadline = started + max(120.0, jobs / 50)
        while True:
            stats = await queue.stats("bench")
            if stats.counts.get(JobStatus.COMPLETED, 0) >= jobs:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{workers} workers did not drain {jobs} jobs: {stats.counts}")
            for proc in procs:
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"a worker exited early:\n{proc.output()[-2000:]}")
            await asyncio.sleep(0.02)
        return jobs / (time.perf_counter() - started)
    finally:
        for proc in procs:
            proc.stop()
        await queue.close()


def scaling(opts: Options, result: CaseResult) -> None:
    missing = _sqlite_unavailable()
    if missing:
        raise CaseUnavailableError(missing)
    one = result.figure("1 worker process", "jobs/s")
    two = result.figure(
        "2 worker processes", "jobs/s", floor_name="1 worker process (ratio = speed-up)"
    )
    for _ in range(opts.repeat):
        with tempfile.TemporaryDirectory(prefix="usvc-bench-") as tmp:
            single = asyncio.run(_sqlite_drain_workers(1, opts.jobs, Path(tmp)))
            double = asyncio.run(_sqlite_drain_workers(2, opts.jobs, Path(tmp)))
        one.add(single)
        two.add(double, single)
    result.details["jobs"] = opts.jobs


# --- dev job latency -----------------------------------------------------------------------


def _latencies_ms(
    server: ServerProcess, calls: int, warmup: int, check: bool
) -> tuple[list[float], float]:
    """Sequential ``POST /dev/job`` round trips on one keep-alive connection, in ms, and
    the server's CPU time per timed call in µs (from /proc: independent of the machine's
    load, unlike the latencies)."""
    out = []
    # httpcore writes a request's head and body separately: without TCP_NODELAY the client's
    # own Nagle delay (waiting for the server's delayed ACK) would be measured.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    cpu = 0.0
    with httpx.Client(base_url=server.url, timeout=30.0, transport=transport) as client:
        for i in range(warmup + calls):
            if i == warmup:
                cpu = server.cpu_seconds()
            began = time.perf_counter()
            response = client.post("/dev/job", json=NOOP_BODY)
            elapsed = time.perf_counter() - began
            if response.status_code != 200 or (
                check and response.json().get("status") != "Completed"
            ):
                raise RuntimeError(f"POST /dev/job: {response.status_code} {response.text}")
            if i >= warmup:
                out.append(elapsed * 1000)
    return out, (server.cpu_seconds() - cpu) / calls * 1e6


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def devjob(opts: Options, result: CaseResult) -> None:
    p50 = result.figure(
        "p50",
        "ms",
        floor_name="bare FastAPI endpoint returning the same body, same client",
        targets=(Target("max", 1.1, "ratio"),),
    )
    p99 = result.figure(
        "p99", "ms", floor_name="bare FastAPI endpoint p99", targets=(Target("max", 10.0),)
    )
    cpu = result.figure(
        "server CPU per request",
        "µs",
        floor_name="bare FastAPI server CPU per request (load-independent)",
    )
    env = {"MICROSERVICE_NAME": "bench", "DEV_MODE": "True"}
    for rep in range(opts.repeat):
        runs: dict[str, tuple[list[float], float]] = {}
        for side in ("bare", "kit") if rep % 2 == 0 else ("kit", "bare"):
            if side == "bare":
                with ServerProcess(BENCH, "bare_fastapi.py", {}) as bare:
                    bare.wait_healthy()
                    runs[side] = _latencies_ms(bare, opts.requests, opts.warmup, check=False)
            else:
                with ServerProcess(SERVICE, "main.py", env) as svc:
                    svc.wait_healthy()
                    runs[side] = _latencies_ms(svc, opts.requests, opts.warmup, check=True)
        (kit, kit_cpu), (floor, floor_cpu) = runs["kit"], runs["bare"]
        p50.add(_percentile(kit, 50), _percentile(floor, 50))
        p99.add(_percentile(kit, 99), _percentile(floor, 99))
        cpu.add(kit_cpu, floor_cpu)
    result.details["requests"] = opts.requests


# --- enqueue ---------------------------------------------------------------------------------


def enqueue(opts: Options, result: CaseResult) -> None:
    names = {
        ("memory", "single"): "in-memory, one per call",
        ("memory", "batched"): f"in-memory, enqueue_many x{opts.batch}",
        ("sqlite", "single"): "SQLite, one per call",
        ("sqlite", "batched"): f"SQLite, enqueue_many x{opts.batch}",
    }
    figs = {key: result.figure(name, "jobs/s") for key, name in names.items()}
    for _ in range(opts.repeat):
        lines = child_json(
            [
                "bench/enqueue.py",
                "memory",
                "sqlite",
                "--jobs",
                str(opts.jobs),
                "--sqlite-jobs",
                str(opts.sqlite_enqueue_jobs),
                "--batch",
                str(opts.batch),
            ],
            timeout=600,
        )
        for line in lines:
            if "unavailable" in line:
                result.message = f"SQLite queue not available: {line['unavailable']}"
                continue
            for how in ("single", "batched"):
                figs[(line["queue"], how)].add(float(line[f"{how}_jobs_per_s"]))
    result.figures = [f for f in result.figures if f.samples]
    result.details.update(jobs=opts.jobs, sqlite_jobs=opts.sqlite_enqueue_jobs)


# --- memory and start-up -------------------------------------------------------------------


def _processed(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jobs_processed_total" and not sample.labels:
                return float(sample.value)
    raise RuntimeError("jobs_processed_total is not in /metrics")


def _preload_report(svc: ServerProcess, timeout: float) -> dict[str, Any]:
    """The JSON line the bench service prints once its preloaded jobs are all Completed."""
    deadline = time.perf_counter() + timeout
    while True:
        for line in svc.output().splitlines():
            if line.startswith('{"preloaded"'):
                report: dict[str, Any] = json.loads(line)
                return report
        if svc.proc.poll() is not None or time.perf_counter() > deadline:
            raise RuntimeError(f"the service did not drain its jobs:\n{svc.output()[-2000:]}")
        time.sleep(0.05)


def memory(opts: Options, result: CaseResult) -> None:
    idle = result.figure("idle RSS, example service", "MB", targets=(Target("max", 50.0),))
    peak = result.figure(f"peak RSS, {opts.memory_jobs:,} jobs queued and draining", "MB")
    drain = result.figure("drain of those jobs inside the service", "jobs/s")
    example_env = {"MICROSERVICE_NAME": "greeting-service", "DEV_MODE": "True"}
    for _ in range(opts.repeat):
        with ServerProcess(EXAMPLE, "main.py", example_env) as svc:
            svc.wait_healthy()
            time.sleep(0.5)  # let start-up garbage settle
            idle.add(svc.rss_kb() / 1024)
        env = {
            "MICROSERVICE_NAME": "bench",
            "DEV_MODE": "True",
            "BENCH_PRELOAD_JOBS": str(opts.memory_jobs),
        }
        with ServerProcess(SERVICE, "main.py", env) as svc:
            svc.wait_healthy()
            report = _preload_report(svc, timeout=max(120.0, opts.memory_jobs / 50))
            if _processed(svc.url) < opts.memory_jobs:
                raise RuntimeError("/metrics counts fewer completed jobs than were drained")
            drain.add(opts.memory_jobs / report["drain_seconds"])
            peak.add(svc.peak_rss_kb() / 1024)


def _import_seconds(modules: str) -> float:
    """Wall time of ``python -c "import <modules>"`` (bytecode cached, as for the service)."""
    command = [sys.executable, "-c", f"import {modules}"]
    began = time.perf_counter()
    subprocess.run(command, env=child_env(), check=True, cwd=ROOT)
    return time.perf_counter() - began


def startup(opts: Options, result: CaseResult) -> None:
    fig = result.figure(
        "process start to first 200 from /health",
        "s",
        floor_name='python -c "import fastapi, uvicorn"',
        targets=(Target("max", 0.4), Target("max", 1.3, "ratio")),
    )
    cpu = result.figure("CPU time of the process until then", "cpu-s")
    cold = result.figure("the same without a bytecode cache", "s")
    env = {"MICROSERVICE_NAME": "greeting-service", "DEV_MODE": "True"}
    with ServerProcess(EXAMPLE, "main.py", env) as svc:
        svc.wait_healthy()  # fills the bytecode cache, as a first start after install does
    _import_seconds("fastapi, uvicorn")
    for rep in range(opts.repeat):
        floor = _import_seconds("fastapi, uvicorn") if rep % 2 == 0 else None
        with ServerProcess(EXAMPLE, "main.py", env) as svc:
            healthy = svc.wait_healthy()
            cpu.add(svc.cpu_seconds())
        if floor is None:
            floor = _import_seconds("fastapi, uvicorn")
        fig.add(healthy, floor)
        with ServerProcess(EXAMPLE, "main.py", env, bytecode_cache=False) as svc:
            cold.add(svc.wait_healthy())


# --- figures measured by other scripts -----------------------------------------------------

#: Scripts that other parts of the kit bring along (the scheduler's cost). Each, run with
#: ``--json`` (and ``--quick`` in quick mode), prints one JSON object per figure:
#: ``{"figure", "unit", "value"}`` plus, where it has one, ``"floor"`` and ``"floor_name"``,
#: and optionally ``"target"``: ``{"bound": "min"|"max", "limit": x, "on": "value"|"ratio"}``.
#: Until a script is on the branch its case reports itself unavailable.
EXTERNAL = {"schedule_cost": BENCH / "schedule_cost.py"}


def _external(name: str) -> Callable[[Options, CaseResult], None]:
    script = EXTERNAL[name]

    def run(opts: Options, result: CaseResult) -> None:
        if not script.exists():
            raise CaseUnavailableError(f"bench/{script.name} is not on this branch yet")
        figures: dict[str, Any] = {}
        for _ in range(opts.repeat):
            args = [f"bench/{script.name}", "--json", *(["--quick"] if opts.quick else [])]
            for line in child_json(args, timeout=600):
                fig = figures.get(line["figure"])
                if fig is None:
                    goal: dict[str, Any] | None = line.get("target")
                    targets = (
                        (Target(goal["bound"], goal["limit"], goal.get("on", "value")),)
                        if goal
                        else ()
                    )
                    fig = figures[line["figure"]] = result.figure(
                        line["figure"],
                        line["unit"],
                        floor_name=line.get("floor_name"),
                        targets=targets,
                    )
                fig.add(float(line["value"]), line.get("floor"))

    return run


CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("inmemory", "20,000 no-op jobs drained by one in-memory worker", inmemory),
        Case("inmemory_logs", "the in-memory drain with INFO JSON logs to a file", inmemory_logs),
        Case("sqlite", "no-op jobs drained by one worker process from a SQLite file", sqlite),
        Case(
            "sqlite_depth", "SQLite drain from a queue 500,000 jobs deep vs shallow", sqlite_depth
        ),
        Case(
            "postgres_depth",
            "PostgreSQL drain from a queue 500,000 jobs deep vs shallow",
            postgres_depth,
        ),
        Case("devjob", "sequential POST /dev/job no-op calls over real HTTP", devjob),
        Case("enqueue", "enqueue one per call and batched, in-memory and SQLite", enqueue),
        Case("memory", "RSS of the idle example service; peak RSS while draining", memory),
        Case("startup", "example service: process start to first 200 from /health", startup),
        Case("scaling", "SQLite drain with 1 and 2 worker processes", scaling),
        Case("cli", "CPU time of usvc --help and usvc jobs ls beside their floor", cli_case),
        Case(
            "schedule_cost",
            "what the scheduler costs (bench/schedule_cost.py)",
            _external("schedule_cost"),
        ),
    ]
}


def describe(options: Options) -> dict[str, Any]:
    return {k: getattr(options, k) for k in options.__dataclass_fields__}
