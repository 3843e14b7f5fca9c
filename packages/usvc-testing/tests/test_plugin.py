"""The pytest plugin makes a service's tests work with no configuration of their own (issue
19 items 10 and 11): async tests and fixtures run, ``from src.services...`` imports, and a
developer's ``.env`` stays out of the tests' settings. Run as a real pytest process in a
project outside this repository that has no pytest configuration at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SERVICE = """
from usvc_core import ServiceProvider


class Greeter(ServiceProvider):
    def greeting(self, name: str) -> str:
        return f"Hello, {name}!"
"""

HANDLER = """
from pydantic import BaseModel
from src.services.greeter import Greeter
from usvc_core import action


class GreetInput(BaseModel):
    name: str


@action("greet")
async def handle(input: GreetInput, greeter: Greeter) -> dict[str, str]:
    return {"message": greeter.greeting(input.name)}
"""

TESTS = """
import pytest
from src.actions.greet.handler import handle
from src.services.greeter import Greeter
from usvc_core import WorkerSettings, load_settings
from usvc_testing import run_action


@pytest.fixture
async def greeter() -> Greeter:
    return Greeter()


async def test_greet(greeter: Greeter) -> None:
    result = await run_action(handle, {"action": "greet", "name": "Ada"}, services=[greeter])
    assert result.ok and result.results == {"message": "Hello, Ada!"}


def test_settings_read_no_dotenv() -> None:
    settings = load_settings(MICROSERVICE_NAME="t", DEV_MODE=True)
    assert (settings.QUEUE_URL, settings.MICROSERVICE_NAME) == ("", "t")
    assert WorkerSettings(MICROSERVICE_NAME="t").QUEUE_URL == ""


def test_settings_read_dotenv_when_asked() -> None:
    assert WorkerSettings(_env_file=".env").QUEUE_URL == "oracle://real-db/prod"
"""


def _project(root: Path) -> None:
    (root / "src" / "services").mkdir(parents=True)
    (root / "src" / "actions" / "greet").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "src" / "services" / "greeter.py").write_text(SERVICE)
    (root / "src" / "actions" / "greet" / "handler.py").write_text(HANDLER)
    (root / "tests" / "test_greet.py").write_text(TESTS)
    # A developer's own settings: must not reach the tests unless they ask.
    (root / ".env").write_text(
        "MICROSERVICE_NAME=from-dotenv\nQUEUE_URL=oracle://real-db/prod\nHTTP_PORT=8123\n"
    )
    (root / "pyproject.toml").write_text('[project]\nname = "my-service"\nversion = "0"\n')


@pytest.mark.slow
def test_a_fresh_project_runs_its_async_tests_with_no_configuration(tmp_path: Path) -> None:
    _project(tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "MICROSERVICE", "QUEUE_", "DEV_", "HTTP_", "COV_"))
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "3 passed" in output
    assert "asyncio_default_fixture_loop_scope" not in output  # no warning to configure it
