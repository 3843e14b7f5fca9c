"""The README's "Testing your service" steps, run for real (issue 19 item 10): a project made
with ``uv init`` outside this repository, our packages added from their built wheels (third
party ones from the package index), the README's handler and test written, ``uv run
pytest`` passes with no configuration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What ``usvc-testing[pytest]`` needs, built from this checkout.
PACKAGES = ("usvc-core", "usvc-sqlite", "usvc-testing")


def _section(readme: str, title: str) -> str:
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def _block(text: str, first_line: str) -> str:
    """The fenced python block of ``text`` whose first line is ``first_line``."""
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line + "\n"):
            return str(block)
    raise AssertionError(f"no python block starting with {first_line!r}")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{output[-4000:]}"
    return output


@pytest.mark.slow
def test_the_readme_testing_steps_pass_in_a_fresh_project(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    testing = _section(readme, "Testing your service")
    steps = [
        "uv init my-service && cd my-service",
        "uv add usvc-core",
        'uv add --dev "usvc-testing[pytest]"',
        "uv run pytest",
    ]
    for step in steps:
        assert step in testing, f"the README no longer says {step!r}: update this test"
    handler = _block(_section(readme, "Writing a service"), "# src/actions/greet/handler.py")
    test = _block(testing, "# tests/test_greet.py")

    uv = shutil.which("uv")
    assert uv is not None, "uv is needed (bash scripts/dev.sh installs it)"
    dist = tmp_path / "dist"
    for package in PACKAGES:
        _run(
            [uv, "build", "--quiet", "--package", package, "--wheel", "-o", str(dist)],
            ROOT,
            {**os.environ},
        )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT", "PYTEST_", "COV_", "MICROSERVICE"))
    }
    # Our packages from the wheels just built; everything else from the package index.
    env["UV_FIND_LINKS"] = str(dist)
    work = tmp_path / "work"
    work.mkdir()
    _run([uv, "init", "--quiet", "--no-workspace", "my-service"], work, env)
    project = work / "my-service"
    _run([uv, "add", "--quiet", "usvc-core"], project, env)
    _run([uv, "add", "--quiet", "--dev", "usvc-testing[pytest]"], project, env)
    lock = (project / "uv.lock").read_text()
    assert f'registry = "{dist}"' in lock  # ours came from the wheels, not from an index

    (project / "src" / "actions" / "greet").mkdir(parents=True)
    (project / "src" / "actions" / "greet" / "handler.py").write_text(handler)
    (project / "tests").mkdir()
    (project / "tests" / "test_greet.py").write_text(test)
    output = _run([uv, "run", "pytest", "-p", "no:cacheprovider"], project, env)
    assert "1 passed" in output, output
