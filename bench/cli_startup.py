"""What one ``usvc`` command costs to start, beside the floor of reading settings.

    uv run python bench/cli_startup.py              # 5 repetitions, a table
    uv run python bench/cli_startup.py --repeat 3 --json

Each command runs as a fresh process in an empty directory (no ``.env``) against an SQLite
queue file; the figure is the CPU time (user + system) of that process, and the floor is
``python -c "import pydantic_settings, sqlite3"``: what reading settings and opening the
queue cannot avoid. Two conditions:

- ``cached``: bytecode read from a cache dir filled by one earlier run (a deployed tool);
- ``uncached``: ``PYTHONDONTWRITEBYTECODE=1`` and an empty cache dir, so every import is
  compiled from source (as on the first run after install, or where that variable is set).

The ``cli`` case of ``bench/run.py`` runs this too. Ratios are reported, never enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "FLOOR", "Sample", "case", "measure", "render"]

FLOOR = ("floor", [sys.executable, "-c", "import pydantic_settings, sqlite3"])
#: name -> arguments after the ``usvc`` command.
COMMANDS = {"usvc --help": ["--help"], "usvc jobs ls": ["jobs", "ls"]}
_QUEUE_FILE = "jobs.db"


def _usvc() -> list[str]:
    script = Path(sys.executable).parent / "usvc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "usvc_core.cli"]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    condition: str  #: "cached" or "uncached"
    cpu_seconds: float
    floor_cpu_seconds: float

    @property
    def ratio(self) -> float:
        return self.cpu_seconds / self.floor_cpu_seconds


def _cpu_of(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """CPU seconds (user + system) of one child process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _env(cache: Path, *, write: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "MICROSERVICE"))}
    env.update(MICROSERVICE_NAME="bench", QUEUE_URL=f"sqlite:///{_QUEUE_FILE}")
    # With a prefix set, Python reads and writes bytecode only there: the condition does not
    # depend on __pycache__ directories a previous install may have left in site-packages.
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    if write:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _make_queue_file(workdir: Path) -> None:
    """The SQLite queue file ``usvc jobs ls`` reads, created through the plugin loader."""
    code = (
        "import asyncio\n"
        "from usvc_core.settings import load_settings\n"
        "from usvc_core.plugins import queue_from_settings\n"
        "async def main():\n"
        "    q = queue_from_settings(load_settings())\n"
        "    await q.open()\n"
        "    await q.close()\n"
        "asyncio.run(main())\n"
    )
    env = _env(workdir / "setup-cache", write=True)
    subprocess.run([sys.executable, "-c", code], env=env, cwd=workdir, check=True)


def measure(repeat: int) -> list[Sample]:
    """``repeat`` samples of each command in each condition, each beside a floor run of the
    same condition taken right before it (alternating order would not help: each run is a
    separate process)."""
    samples: list[Sample] = []
    usvc = _usvc()
    with tempfile.TemporaryDirectory(prefix="usvc-cli-bench-") as tmp:
        workdir = Path(tmp)
        _make_queue_file(workdir)
        warm = workdir / "warm-cache"
        warm_env = _env(warm, write=True)
        for args in (FLOOR[1], *(usvc + a for a in COMMANDS.values())):
            _cpu_of(args, warm_env, workdir)  # fills the cache
        for rep in range(repeat):
            for condition in ("cached", "uncached"):
                if condition == "cached":
                    env = _env(warm, write=False)
                else:
                    env = _env(workdir / f"empty-{rep}", write=False)
                for name, rest in COMMANDS.items():
                    floor = _cpu_of(FLOOR[1], env, workdir)
                    cpu = _cpu_of(usvc + rest, env, workdir)
                    samples.append(Sample(name, condition, cpu, floor))
    return samples


def summary(samples: list[Sample]) -> list[dict[str, Any]]:
    """Medians per command and condition."""
    rows = []
    keys = dict.fromkeys((s.name, s.condition) for s in samples)
    for name, condition in keys:
        mine = [s for s in samples if (s.name, s.condition) == (name, condition)]
        rows.append(
            {
                "command": name,
                "condition": condition,
                "cpu_seconds": statistics.median(s.cpu_seconds for s in mine),
                "floor_cpu_seconds": statistics.median(s.floor_cpu_seconds for s in mine),
                "ratio": statistics.median(s.ratio for s in mine),
                "repeat": len(mine),
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'command':<14} {'condition':<9} {'cpu s':>7} {'floor s':>8} {'ratio':>6}"]
    lines += [
        f"{r['command']:<14} {r['condition']:<9} {r['cpu_seconds']:>7.3f} "
        f"{r['floor_cpu_seconds']:>8.3f} {r['ratio']:>6.2f}"
        for r in rows
    ]
    note = "target: ratio <= 1.3 cached; floor = import pydantic_settings, sqlite3"
    return "\n".join([*lines, note])


def case(opts: Any, result: Any) -> None:
    """The ``cli`` case of ``bench/run.py``: one figure per command and condition, each
    with its floor; the target (1.3x the floor) is on the cached runs."""
    from harness import Target

    samples = measure(opts.repeat)
    for name, condition in dict.fromkeys((s.name, s.condition) for s in samples):
        targets = (Target("max", 1.3, "ratio"),) if condition == "cached" else ()
        fig = result.figure(
            f"{name}, bytecode {condition}",
            "cpu-s",
            floor_name=f"{FLOOR[1][-1]!r}, {condition}",
            targets=targets,
        )
        for s in samples:
            if (s.name, s.condition) == (name, condition):
                fig.add(s.cpu_seconds, s.floor_cpu_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    rows = summary(measure(args.repeat))
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(render(rows))


if __name__ == "__main__":
    main()
