"""What every case shares: figures with their samples and targets, summary statistics, the
machine description, child processes that answer in JSON lines, and the printed table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BENCH",
    "PYCACHE",
    "ROOT",
    "CaseResult",
    "CaseUnavailableError",
    "Figure",
    "Target",
    "child_env",
    "child_json",
    "cpu_model",
    "fmt_number",
    "machine",
    "render_table",
    "summary",
]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: Where child processes keep their compiled bytecode (git-ignored with bench/results/).
PYCACHE = BENCH / "results" / "pycache"


def child_env(*, bytecode_cache: bool = True) -> dict[str, str]:
    """The environment of every measured process.

    A deployed service imports from compiled bytecode; an environment that sets
    ``PYTHONDONTWRITEBYTECODE`` (as some sandboxes and CI images do) would make every
    process compile all of FastAPI, pydantic & co. from source at start-up instead. So
    children keep their bytecode under :data:`PYCACHE` unless ``bytecode_cache`` is False.
    """
    env = dict(os.environ)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


class CaseUnavailableError(Exception):
    """A case cannot run on this checkout (e.g. the SQLite queue is not there yet)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A bound on a figure's median (``on="value"``) or on its ratio to the floor."""

    bound: Literal["min", "max"]
    limit: float
    on: Literal["value", "ratio"] = "value"

    def met(self, value: float) -> bool:
        return value >= self.limit if self.bound == "min" else value <= self.limit

    def __str__(self) -> str:
        sign = ">=" if self.bound == "min" else "<="
        what = "x floor" if self.on == "ratio" else ""
        return f"{sign} {self.limit:g}{what}"


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the spread (max - min) relative to the median."""
    med = statistics.median(samples)
    lo, hi = min(samples), max(samples)
    return {
        "median": med,
        "min": lo,
        "max": hi,
        "spread": (hi - lo) / med if med else 0.0,
    }


@dataclass(slots=True)
class Figure:
    """One measured quantity of a case, one sample per repetition.

    ``floor`` holds the samples of what it is compared with, measured in the same
    repetitions; ``ratio`` is value / floor per repetition (so for throughput it is at most
    about 1, for latency at least about 1).
    """

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    floor_name: str | None = None
    floor: list[float] = field(default_factory=list)
    targets: tuple[Target, ...] = ()

    def add(self, value: float, floor: float | None = None) -> None:
        self.samples.append(value)
        if floor is not None:
            self.floor.append(floor)

    @property
    def ratios(self) -> list[float]:
        return [v / f for v, f in zip(self.samples, self.floor, strict=False) if f]

    def verdicts(self) -> list[tuple[Target, bool]]:
        out = []
        for target in self.targets:
            if target.on == "ratio":
                if not self.ratios:
                    continue
                out.append((target, target.met(statistics.median(self.ratios))))
            elif self.samples:
                out.append((target, target.met(statistics.median(self.samples))))
        return out

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "unit": self.unit, "samples": self.samples}
        if self.samples:
            data.update(summary(self.samples))
        if self.floor:
            data["floor"] = {"name": self.floor_name, "samples": self.floor, **summary(self.floor)}
            data["ratio"] = {"samples": self.ratios, **summary(self.ratios)}
        if self.targets:
            data["targets"] = [
                {"target": str(t), "bound": t.bound, "limit": t.limit, "on": t.on, "met": ok}
                for t, ok in self.verdicts()
            ]
        return data


@dataclass(slots=True)
class CaseResult:
    """A case's figures, or why it did not run (``unavailable``) or broke (``error``)."""

    name: str
    description: str
    status: Literal["ok", "unavailable", "error"] = "ok"
    message: str = ""
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def figure(self, name: str, unit: str, **kwargs: Any) -> Figure:
        fig = Figure(name, unit, **kwargs)
        self.figures.append(fig)
        return fig

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "message": self.message,
            "seconds": self.seconds,
            "figures": [f.to_json() for f in self.figures],
            "details": self.details,
        }


def cpu_model(default: str = "unknown") -> str:
    """The CPU's model name from /proc/cpuinfo, or ``default`` where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def machine() -> dict[str, Any]:
    """Where the figures come from: cores, CPU model, Python, load at the start."""
    cpu = cpu_model()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--exclude", "*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "revision": git.stdout.strip() or None,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


def child_json(args: Sequence[str], timeout: float, cwd: Path = ROOT) -> list[dict[str, Any]]:
    """Run ``python <args>`` and return the JSON objects it printed, one per line.

    A failing child raises with the tail of its output, so the case reports why.
    """
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n" + "\n".join(tail))
    out = []
    for raw in proc.stdout.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def fmt_number(value: float) -> str:
    """A figure as the tables print it: thousands separated, about three digits shown."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render_table(cases: Sequence[CaseResult]) -> str:
    """A plain-text table: one row per figure, medians with their spread and floor ratio."""
    header = ("case", "figure", "median", "spread", "floor", "ratio", "target", "")
    rows: list[tuple[str, ...] | tuple[str, str]] = []
    for case in cases:
        if case.status != "ok":
            first = case.message.splitlines()[0] if case.message else ""
            rows.append((case.name, f"{case.status.upper()}: {first}"))
            continue
        for fig in case.figures:
            if not fig.samples:
                continue
            s = summary(fig.samples)
            floor = ratio = ""
            if fig.floor:
                floor = fmt_number(summary(fig.floor)["median"])
                ratio = f"{summary(fig.ratios)['median']:.3g}"
            verdicts = fig.verdicts()
            mark = ""
            if verdicts:
                mark = "ok" if all(ok for _, ok in verdicts) else "MISSED"
            rows.append(
                (
                    case.name,
                    f"{fig.name} ({fig.unit})",
                    fmt_number(s["median"]),
                    f"±{s['spread'] * 50:.0f}%" if len(fig.samples) > 1 else "n=1",
                    floor,
                    ratio,
                    ", ".join(str(t) for t, _ in verdicts),
                    mark,
                )
            )
    full = [r for r in rows if len(r) == len(header)]
    widths = [max(len(r[i]) for r in [header, *full]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        if len(r) == len(header):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        else:  # a case that did not run: its status spans the row
            lines.append(f"{r[0].ljust(widths[0])}  {r[1]}")
    return "\n".join(lines)
