"""Render a harness JSON report as the Markdown that docs/benchmarks.md holds.

uv run python bench/report.py bench/results/bench-20260101-120000.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness import fmt_number

__all__ = ["markdown"]


def _run_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["loadavg_at_start"])
    names = ", ".join(c["name"] for c in report["cases"])
    return (
        f"- `{report['command'].strip()}`: revision `{m.get('revision')}`, "
        f"{report['finished_at'][:16].replace('T', ' ')} UTC, "
        f"{report['options']['repeat']} repetitions, load average at start {load}; "
        f"cases {names}"
    )


def markdown(*reports: dict[str, Any]) -> str:
    """The machine, the commands and one table row per figure; a case measured in several
    reports is taken from the last one."""
    m = reports[0]["machine"]
    cases: dict[str, dict[str, Any]] = {}
    for report in reports:
        cases.update({c["name"]: c for c in report["cases"]})
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['implementation']} {m['python']}, "
        f"{m['platform']}.",
        "",
        *[_run_line(r) for r in reports],
        "",
        "| case | figure | median | min .. max | floor (median) | ratio (median) | target | |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for case in cases.values():
        if case["status"] != "ok":
            lines.append(f"| {case['name']} | {case['status']}: {case['message']} | | | | | | |")
            continue
        for fig in case["figures"]:
            floor = ratio = ""
            if "floor" in fig:
                floor = fmt_number(fig["floor"]["median"])
                ratio = f"{fig['ratio']['median']:.3g}"
            targets = fig.get("targets", [])
            verdict = ""
            if targets:
                verdict = "met" if all(t["met"] for t in targets) else "**missed**"
            lines.append(
                f"| {case['name']} | {fig['name']} ({fig['unit']}) | {fmt_number(fig['median'])} | "
                f"{fmt_number(fig['min'])} .. {fmt_number(fig['max'])} | {floor} | {ratio} | "
                f"{', '.join(t['target'] for t in targets)} | {verdict} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+")
    args = parser.parse_args(argv)
    print(markdown(*(json.loads(p.read_text()) for p in args.reports)))


if __name__ == "__main__":
    main()
