"""Two revisions side by side: ``python bench/run.py compare REV_A REV_B --rounds 5``.

Each revision is checked out as a git worktree in a temporary directory and gets its own
environment (``uv sync --frozen``). Then the rounds alternate the two (A then B, B then A,
...), each side running this checkout's harness (``bench/run.py --repeat 1``, the same cases
and sizes) with its own interpreter, so the code measured is the revision's and the
workload is the same. The example service of the idle-RSS and start-up cases is the
revision's own (``USVC_BENCH_TARGET``).

Each figure's median over the rounds is printed per side with B/A; where the figure has a
floor, each side's median ratio to its floor too (the floor is measured next to the figure
in every round, so this ratio is what compares between machines). Every sample goes to
the JSON report (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import BENCH, ROOT, child_env, fmt_number, machine

__all__ = ["main", "summarize"]

#: Figures where a larger value is better; ``B/A`` above 1 is then an improvement.
_HIGHER_IS_BETTER = ("jobs/s", "jobs/cpu-s")


def _git(*args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def _base_python() -> str:
    return str(getattr(sys, "_base_executable", sys.executable))


def _uv() -> list[str]:
    """uv on PATH, else the one installed next to the base interpreter (what scripts/dev.sh
    installs)."""
    found = shutil.which("uv")
    if found:
        return [found]
    probe = subprocess.run(
        [_base_python(), "-m", "uv", "--version"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return [_base_python(), "-m", "uv"]
    raise SystemExit("compare needs uv (it syncs each revision's environment): bash scripts/dev.sh")


def _checkout(rev: str, where: Path) -> Path:
    """A worktree of ``rev`` at ``where`` with its environment synced; returns its Python."""
    _git("worktree", "add", "--detach", "--force", str(where), rev)
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env.setdefault("UV_PYTHON", _base_python())
    subprocess.run([*_uv(), "sync", "--frozen", "--quiet"], cwd=where, env=env, check=True)
    return where / ".venv" / "bin" / "python"


def _round(python: Path, target: Path, harness_args: list[str], out: Path) -> dict[str, Any]:
    env = {k: v for k, v in child_env().items() if k != "VIRTUAL_ENV"}
    env["USVC_BENCH_TARGET"] = str(target)
    command = [
        str(python),
        str(BENCH / "run.py"),
        *harness_args,
        "--repeat",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise RuntimeError(f"{shlex.join(command)} exited {proc.returncode}:\n" + "\n".join(tail))
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _samples(reports: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(case, figure) -> unit, values, floors and ratios over the rounds of one side."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for report in reports:
        for case in report["cases"]:
            if case["status"] != "ok":
                key = (case["name"], "")
                out.setdefault(key, {"status": case["status"], "message": case["message"]})
                continue
            for fig in case["figures"]:
                row = out.setdefault(
                    (case["name"], fig["name"]),
                    {"unit": fig["unit"], "values": [], "floors": [], "ratios": []},
                )
                row["values"] += fig["samples"]
                if "floor" in fig:
                    row["floors"] += fig["floor"]["samples"]
                    row["ratios"] += fig["ratio"]["samples"]
    return out


def summarize(sides: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per figure: medians per side, B/A of the medians, each side's floor ratio."""
    a, b = (_samples(reports) for reports in sides.values())
    rows = []
    for key in list(dict.fromkeys([*a, *b])):
        ra, rb = a.get(key, {}), b.get(key, {})
        if not key[1]:
            rows.append(
                {"case": key[0], "figure": "", "status": ra.get("message") or rb.get("message")}
            )
            continue
        row: dict[str, Any] = {"case": key[0], "figure": key[1], "unit": (ra or rb)["unit"]}
        for label, side in (("a", ra), ("b", rb)):
            if side.get("values"):
                row[f"{label}_samples"] = side["values"]
                row[f"{label}_median"] = statistics.median(side["values"])
            if side.get("ratios"):
                row[f"{label}_floor_median"] = statistics.median(side["floors"])
                row[f"{label}_vs_floor"] = statistics.median(side["ratios"])
        if "a_median" in row and "b_median" in row and row["a_median"]:
            row["b_over_a"] = row["b_median"] / row["a_median"]
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], names: tuple[str, str]) -> str:
    header = ("case", "figure", names[0], names[1], "B/A", "A vs floor", "B vs floor")
    body: list[tuple[str, ...]] = []
    for row in rows:
        if not row["figure"]:
            body.append(
                (row["case"], f"not run: {str(row['status']).splitlines()[0]}", "", "", "", "", "")
            )
            continue

        def num(key: str, row: dict[str, Any] = row) -> str:
            return fmt_number(row[key]) if key in row else ""

        def ratio(key: str, row: dict[str, Any] = row) -> str:
            return f"{row[key]:.3g}" if key in row else ""

        body.append(
            (
                row["case"],
                f"{row['figure']} ({row['unit']})",
                num("a_median"),
                num("b_median"),
                ratio("b_over_a"),
                ratio("a_vs_floor"),
                ratio("b_vs_floor"),
            )
        )
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run.py compare", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("rev_a", help="the revision before (any git revision)")
    parser.add_argument("rev_b", help="the revision after")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    parser.add_argument("--keep", action="store_true", help="keep the worktrees and round files")
    parser.add_argument(
        "--out", type=Path, help="JSON file (default bench/results/compare-<time>.json)"
    )
    args, harness_args = parser.parse_known_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if "--repeat" in harness_args:
        parser.error("compare runs --repeat 1 per round; use --rounds")
    names = (args.rev_a, args.rev_b)
    shas = tuple(_git("rev-parse", "--verify", f"{rev}^{{commit}}") for rev in names)
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="usvc-compare-"))
    trees = {label: tmp / label for label in ("A", "B")}
    print(f"usvc bench compare: A={names[0]} ({shas[0][:10]}), B={names[1]} ({shas[1][:10]}), "
          f"{args.rounds} rounds, load {info['loadavg_at_start']}; harness args: "
          f"{shlex.join(harness_args) or '(defaults)'}", flush=True)  # fmt: skip
    try:
        pythons = {
            label: _checkout(sha, trees[label]) for label, sha in zip(trees, shas, strict=True)
        }
        reports: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
        for n in range(args.rounds):
            order = ["A", "B"] if n % 2 == 0 else ["B", "A"]
            for label in order:
                print(f"  round {n + 1}/{args.rounds}: {label} ...", flush=True)
                out = tmp / f"{label}-{n}.json"
                reports[label].append(_round(pythons[label], trees[label], harness_args, out))
    finally:
        if not args.keep:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               capture_output=True, check=False)  # fmt: skip
    rows = summarize(reports)
    print()
    print(render(rows, names))
    started = datetime.now(UTC)
    out_path: Path = args.out or BENCH / "results" / f"compare-{started:%Y%m%d-%H%M%S}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": "uv run python bench/run.py compare " + shlex.join(argv),
        "finished_at": started.isoformat(),
        "machine": info,
        "a": {"rev": names[0], "commit": shas[0]},
        "b": {"rev": names[1], "commit": shas[1]},
        "rounds": args.rounds,
        "figures": rows,
        "round_reports": reports,
    }
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {out_path}" + (f"\nworktrees kept in {tmp}" if args.keep else ""))
    return 0
