"""Every service loads ``usvc_postgres.settings`` at start-up; asyncpg must not come with it."""

from __future__ import annotations

import subprocess
import sys


def _loaded(code: str, module: str) -> bool:
    probe = f"import sys\n{code}\nprint({module!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_the_settings_entry_point_loads_no_driver() -> None:
    assert not _loaded("from usvc_postgres.settings import PostgresSettings", "asyncpg")


def test_the_queue_loads_on_first_use() -> None:
    assert _loaded("from usvc_postgres import PostgresQueue", "asyncpg")
