"""The README's `usvc_lib` -> usvc table: every name on the right is importable as written."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_ROW = re.compile(r"^\| `from (usvc_lib[\w.]*) import (\w+)` \| `from (usvc_\w+) import (\w+)`")


def _rows() -> list[tuple[str, str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Coming from `usvc_lib`", 1)[1].split("\n## ", 1)[0]
    return [
        (m.group(2), m.group(3), m.group(4))
        for line in section.splitlines()
        if (m := _ROW.match(line))
    ]


def test_the_table_covers_the_spec_public_names() -> None:
    """Every name the spec imports from usvc_lib has a row."""
    spec_names = {"Application", "action", "ServiceProvider", "RestAPIService", "RestAPIConfig"}
    spec_names |= {"CircuitBreaker", "CircuitOpenError", "RateLimiter", "logger", "Status"}
    assert spec_names <= {old for old, _, _ in _rows()}


@pytest.mark.parametrize(("old", "module", "name"), _rows())
def test_each_new_name_imports(old: str, module: str, name: str) -> None:
    """The usvc side of each row resolves."""
    assert getattr(importlib.import_module(module), name) is not None, old
