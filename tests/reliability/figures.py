"""Figures the suites measure, collected for ``docs/reliability.md``.

Each suite calls :func:`record_figures`; when ``USVC_RELIABILITY_FIGURES`` names a file, the
figures are appended to it as one JSON line per call (``python -m tests.reliability.run``
sets it and prints the table at the end). Without it, figures are only printed by pytest
with ``-s``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["env_int", "read_figures", "record_figures"]

FIGURES_ENV = "USVC_RELIABILITY_FIGURES"


def env_int(name: str, default: int) -> int:
    """An integer knob from the environment (suite sizes)."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def record_figures(suite: str, **values: Any) -> None:
    line = json.dumps({"suite": suite, **values}, sort_keys=True)
    print(f"reliability figures: {line}")
    target = os.environ.get(FIGURES_ENV)
    if target:
        with Path(target).open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def read_figures(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
