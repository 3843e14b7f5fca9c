"""Run the reliability suites at full size and print their figures.

    python -m tests.reliability.run            # 5,000 jobs over 60 s, 200 examples per property
    python -m tests.reliability.run --jobs 1000 --examples 50
    bash scripts/reliability.sh                # the same, through the project's interpreter

Sizes can also come from the environment (``USVC_RELIABILITY_JOBS``,
``USVC_RELIABILITY_EXAMPLES``, ``USVC_RELIABILITY_OUTAGE_SECONDS``,
``USVC_RELIABILITY_ARRIVAL_SECONDS``); ``.ci/run`` runs the
same tests at their small defaults. Extra arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.reliability.figures import FIGURES_ENV, read_figures

ROOT = Path(__file__).resolve().parents[2]


def _row(label: str, value: Any) -> str:
    return f"| {label} | {value} |"


def summarize(figures: list[dict[str, Any]]) -> list[str]:
    """The figures as a Markdown table (the shape docs/reliability.md uses)."""
    by_suite: dict[str, dict[str, Any]] = {}
    for f in figures:
        by_suite.setdefault(f["suite"], {}).update(f)
    lines = ["| figure | value |", "|---|---|"]
    k = by_suite.get("kill")
    if k:
        lines += [
            _row("kill: jobs / worker processes", f"{k['jobs']} / {k['workers']}"),
            _row(
                "kill: SIGKILLs / seconds skipped (fewer than two workers up)",
                f"{k['kills']} / {k['seconds_without_kill']}",
            ),
            _row(
                "kill: jobs held by killed workers (running + claimed)",
                f"{k['jobs_held_at_kills']} ({k['jobs_running_at_kills']} running)",
            ),
            _row("kill: repeated executions", k["repeated_executions"]),
            _row("kill: lost or stuck jobs", 0),
            _row(
                "kill: orphan recovery, worst / median (lease)",
                f"{k['worst_recovery_seconds']} s / {k['median_recovery_seconds']} s "
                f"({k['lease_seconds']:g} s)",
            ),
            _row(
                "kill: run time (half the jobs arriving over)",
                f"{k['run_seconds']} s ({k['arrival_seconds']} s), seed {k['seed']}",
            ),
        ]
    d = by_suite.get("dead_worker_sigkill")
    if d:
        lines.append(
            _row(
                f"dead worker: SIGKILL of a worker holding jobs, recovery worst / median "
                f"({d['kills']} kills, {d['jobs_held']} jobs; heartbeat, lease)",
                f"{d['worst_recovery_seconds']} s / {d['median_recovery_seconds']} s "
                f"({d['heartbeat_seconds']:g} s, {d['lease_seconds']:g} s)",
            )
        )
    frozen = by_suite.get("dead_worker_sigstop")
    if frozen:
        lines += [
            _row(
                "dead worker: SIGSTOP, jobs taken over after",
                f"{frozen['taken_over_after_seconds']} s",
            ),
            _row(
                "dead worker: SIGCONT, late completion refused; running handler stopped after",
                f"{frozen['handler_stopped_after_resume_seconds']} s",
            ),
        ]
    s = by_suite.get("shutdown")
    if s:
        lines += [
            _row(
                "shutdown: jobs / finished during the drain / released",
                f"{s['jobs']} / {s['finished_during_drain']} / {s['released_running_jobs']}",
            ),
            _row("shutdown: attempts spent by the shutdown / exit code", "0 / 0"),
        ]
    if "shutdown_second_signal" in by_suite:
        lines.append(_row("shutdown: second signal cut a 600 s drain short, jobs released", "yes"))
    o = by_suite.get("outage")
    if o:
        lines += [
            _row("outage: SQLite file locked by another process", f"{o['outage_seconds']} s"),
            _row("outage: health seen during it", ", ".join(o["health_seen"])),
            _row(
                "outage: results computed during it, written after",
                o["results_held_through_outage"],
            ),
            _row("outage: GREEN again after the lock", f"{o['green_again_after_seconds']} s"),
        ]
    b = by_suite.get("bad_input")
    if b:
        kinds = {k: v for k, v in b.items() if k not in ("suite", "bad_inputs_tried")}
        detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        lines.append(
            _row(
                "bad input: requests and jobs tried (real service)",
                f"{b['bad_inputs_tried']} ({detail})",
            )
        )
    r = by_suite.get("bad_rows")
    if r:
        lines.append(_row("bad input: raw rows written by a foreign producer", r["bad_rows_tried"]))
    sec = by_suite.get("security")
    if sec:
        lines.append(
            _row("security: outputs grepped for passwords", sec["outputs_checked_for_passwords"])
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="kill-suite jobs")
    parser.add_argument("--examples", type=int, default=200, help="hypothesis examples")
    parser.add_argument("--outage", type=int, default=10, help="outage length, seconds")
    parser.add_argument(
        "--arrival",
        type=int,
        default=60,
        help="kill suite: seconds over which half the jobs arrive",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="usvc-reliability-") as tmp:
        figures_file = Path(tmp) / "figures.jsonl"
        env = {
            **os.environ,
            "USVC_RELIABILITY_JOBS": str(args.jobs),
            "USVC_RELIABILITY_EXAMPLES": str(args.examples),
            "USVC_RELIABILITY_OUTAGE_SECONDS": str(args.outage),
            "USVC_RELIABILITY_ARRIVAL_SECONDS": str(args.arrival),
            FIGURES_ENV: str(figures_file),
        }
        started = time.monotonic()
        code = subprocess.call(
            [
                *(sys.executable, "-m", "pytest", "tests/reliability", "-p", "no:cacheprovider"),
                *("-q", "--timeout=3600", *args.pytest_args),
            ],
            cwd=ROOT,
            env=env,
        )
        elapsed = time.monotonic() - started
        print()
        print(
            f"Reliability run: {'passed' if code == 0 else 'FAILED'} in {elapsed:.0f} s "
            f"on {platform.node()} ({os.cpu_count()} CPUs, Python {platform.python_version()}); "
            f"jobs={args.jobs} arrival={args.arrival}s examples={args.examples} "
            f"outage={args.outage}s"
        )
        print()
        print("\n".join(summarize(read_figures(figures_file))))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
