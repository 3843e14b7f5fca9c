"""The usvc benchmark harness: measures the kit against its physical floor.

    uv run python bench/run.py                       # every case, full sizes, 5 repetitions
    uv run python bench/run.py --quick               # a few seconds: every case, tiny sizes
    uv run python bench/run.py --cases inmemory,devjob --repeat 3
    uv run python bench/run.py --list
    uv run python bench/run.py compare REV_A REV_B --rounds 5 --cases inmemory,sqlite

Each case runs ``--repeat`` times; the table shows each figure's median, its spread (half
the range, relative to the median), the median of its floor and the median of the
per-repetition ratio to that floor. Everything, samples included, is written as JSON to
``bench/results/`` (git-ignored) or to ``--out``. Targets are reported, never enforced:
the exit status is 1 only when a case broke.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from cases import CASES, Options, describe
from harness import BENCH, CaseResult, CaseUnavailableError, machine, render_table

QUICK = Options(
    repeat=1,
    jobs=500,
    requests=50,
    warmup=10,
    memory_jobs=500,
    sqlite_enqueue_jobs=50,
    batch=50,
    sqlite_jobs=500,
    depth=5_000,
    quick=True,
)


def _options(args: argparse.Namespace) -> Options:
    base = QUICK if args.quick else Options()
    given = {
        "repeat": args.repeat,
        "jobs": args.jobs,
        "requests": args.requests,
        "memory_jobs": args.memory_jobs,
        "sqlite_jobs": args.sqlite_jobs,
        "depth": args.depth,
    }
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cases:\n" + "\n".join(f"  {c.name:14} {c.description}" for c in CASES.values()),
    )
    parser.add_argument("--cases", default="all", help="comma-separated case names (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--repeat", type=int, help="repetitions per case (5; quick 1)")
    parser.add_argument("--jobs", type=int, help="jobs per drain (20000; quick 500)")
    parser.add_argument("--requests", type=int, help="POST /dev/job calls (2000; quick 50)")
    parser.add_argument("--memory-jobs", type=int, help="jobs queued for peak RSS (10000)")
    parser.add_argument("--sqlite-jobs", type=int, help="jobs per SQLite drain (5000; quick 500)")
    parser.add_argument(
        "--depth", type=int, help="Ready jobs of the deep queue (500000; quick 5000)"
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.cases != "all":
        unknown = set(args.cases.split(",")) - set(CASES)
        if unknown:
            parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; see --list")
    for name in ("repeat", "jobs", "requests", "memory_jobs", "sqlite_jobs", "depth"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run_case(name: str, options: Options) -> CaseResult:
    case = CASES[name]
    result = CaseResult(case.name, case.description)
    began = time.perf_counter()
    try:
        case.run(options, result)
    except CaseUnavailableError as exc:
        result.status, result.message = "unavailable", str(exc)
    except Exception as exc:
        result.status = "error"
        result.message = f"{type(exc).__name__}: {exc}"
        result.details["traceback"] = traceback.format_exc()
    result.seconds = time.perf_counter() - began
    return result


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["compare"]:
        from compare import main as compare

        return compare(given[1:])
    args = _parse(argv)
    if args.list:
        for case in CASES.values():
            print(f"{case.name:14} {case.description}")
        return 0
    options = _options(args)
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    info = machine()
    print(
        f"usvc bench: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"revision {info['revision']}, load {info['loadavg_at_start']}; "
        + ("quick mode" if options.quick else f"{options.repeat} repetitions"),
        flush=True,
    )
    results = []
    for name in names:
        print(f"  running {name} ...", flush=True)
        result = run_case(name, options)
        results.append(result)
        if result.status == "error":
            print(result.details.get("traceback", result.message), file=sys.stderr)
    print()
    print(render_table(results))
    started = datetime.now(UTC)
    out: Path = args.out or BENCH / "results" / f"bench-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "uv run python bench/run.py " + shlex.join(argv or sys.argv[1:]),
        "finished_at": started.isoformat(),
        "machine": info,
        "options": describe(options),
        "cases": [r.to_json() for r in results],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {out}")
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
