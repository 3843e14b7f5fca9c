"""Fixtures of the power-loss suite: a lazy filesystem mounted for one test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.powerloss.harness import LazyMount, fuse_unavailable


@pytest.fixture
def lazy_mount(tmp_path: Path) -> Iterator[LazyMount]:
    """The lazy filesystem on ``tmp_path/mnt``; skipped where FUSE cannot run."""
    reason = fuse_unavailable()
    if reason:
        pytest.skip(f"power-loss suite needs FUSE: {reason}")
    mount = LazyMount(tmp_path)
    mount.start()
    try:
        yield mount
    finally:
        mount.stop()
