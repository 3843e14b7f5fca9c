"""What ``import usvc_http`` costs: its public names load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import usvc_http

_HEAVY = ("fastapi", "starlette", "uvicorn", "httpx", "httpcore")


def _imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    return [name for name in _HEAVY if name in loaded]


def test_importing_the_package_alone_loads_no_server_nor_client() -> None:
    assert _imported_after("import usvc_http") == []


def test_the_rest_client_template_does_not_load_the_server() -> None:
    assert _imported_after("from usvc_http import RestAPIService") == ["httpx"]


@pytest.mark.parametrize("name", usvc_http.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(usvc_http, name).__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = usvc_http.no_such_name
