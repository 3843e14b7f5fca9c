"""What the in-memory drain's clock sees and its instruction count does not: callgrind's
cache simulation of the kit's drain and of its floor, per job.

    uv run python bench/cache_sim.py                 # 1,000 and 3,000 jobs each (a few minutes)
    uv run python bench/cache_sim.py --jobs 200 600  # quicker, noisier

Each side runs twice under ``valgrind --tool=callgrind --cache-sim=yes``, draining the two
sizes; only the drain is collected (it runs inside ``exec``, the toggle), and the per-job
figure is the difference of the two runs over the difference of the sizes, so start-up
and set-up cancel. Events: instructions (Ir), data reads and writes (Dr, Dw), first-level
misses (I1mr, D1mr, D1mw) and last-level misses (ILmr, DLmr, DLmw), on the caches valgrind
models for this CPU. Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

__all__ = ["per_job"]

_EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def _child(side: str, count: int) -> None:
    """One drain of ``count`` jobs, its drain alone inside ``exec`` (what is collected)."""
    import drain

    drain.configure_quiet_logging()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if side == "floor":
        definition = drain.noop_definition()
        model, handler = definition.input_model, definition.handler
        assert model is not None
        ready = drain.payloads(count)

        async def measured() -> None:
            jobs = iter(ready)

            async def lane() -> None:  # drain.drain_floor's lane
                for payload in jobs:
                    data = {k: v for k, v in payload.items() if k != "action"}
                    await handler(model.model_validate(data))

            await asyncio.gather(*(lane() for _ in range(drain.CONCURRENCY)))

    else:
        from usvc_core import Application, EnqueueRequest, JobStatus, WorkerSettings
        from usvc_testing import InMemoryQueue

        settings = WorkerSettings(  # drain.started_kit's
            _env_file=None,
            MICROSERVICE_NAME=drain.SERVICE,
            DEV_MODE=True,
            MAX_CONCURRENT_JOBS=drain.CONCURRENCY,
            HTTP_ENABLED=False,
        )
        queue = InMemoryQueue()
        app = Application(
            drain.ACTIONS_DIR, settings=settings, queue=queue, surfaces=[], configure_logging=False
        )
        requests = [EnqueueRequest(p, drain.SERVICE) for p in drain.payloads(count)]
        jobs = loop.run_until_complete(queue.enqueue_many(requests))

        async def measured() -> None:
            # The start is collected too (the same in both sizes: it cancels); the drain
            # must be, and the worker's first turn may already run jobs.
            await app.start()
            await app.worker.watch(jobs[-1].id)
            while (await queue.stats(drain.SERVICE)).counts[JobStatus.COMPLETED] < count:  # noqa: ASYNC110
                await asyncio.sleep(0.001)

    exec("loop.run_until_complete(measured())", {"loop": loop, "measured": measured})
    if side == "kit":
        loop.run_until_complete(app.stop())


def _totals(out_file: str) -> dict[str, int]:
    events: list[str] = []
    with open(out_file, encoding="utf-8") as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                return dict(zip(events, map(int, line.split()[1:]), strict=False))
    raise RuntimeError(f"no totals in {out_file}")


def _run(side: str, count: int, directory: str) -> dict[str, int]:
    out = f"{directory}/{side}.{count}.cg"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--cache-sim=yes",
        "--collect-atstart=no",
        "--toggle-collect=builtin_exec*",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        side,
        str(count),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(command, check=True, capture_output=True, env=env)
    return _totals(out)


def per_job(small: int, large: int) -> dict[str, dict[str, float]]:
    """Each side's events per job: (run of ``large`` - run of ``small``) / (large - small)."""
    result = {}
    with tempfile.TemporaryDirectory(prefix="usvc-bench-cache-") as tmp:
        for side in ("kit", "floor"):
            a, b = _run(side, small, tmp), _run(side, large, tmp)
            result[side] = {e: (b.get(e, 0) - a.get(e, 0)) / (large - small) for e in _EVENTS}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=(1000, 3000), metavar=("A", "B"))
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    figures = per_job(*args.jobs)
    kit, floor = figures["kit"], figures["floor"]
    print(f"per job, drains of {args.jobs[1]} minus {args.jobs[0]} jobs")
    print(f"{'event':6} {'kit':>10} {'floor':>10} {'kit/floor':>10} {'kit per Ir':>11}")
    for e in _EVENTS:
        ratio = kit[e] / floor[e] if floor[e] > 0 else float("nan")
        share = kit[e] / kit["Ir"] if kit["Ir"] else float("nan")
        print(f"{e:6} {kit[e]:10.1f} {floor[e]:10.1f} {ratio:10.2f} {share:11.4f}")


if __name__ == "__main__":
    main()
