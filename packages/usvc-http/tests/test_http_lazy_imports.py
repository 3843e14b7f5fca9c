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


def test_the_rest_client_template_loads_neither_the_server_nor_httpx() -> None:
    assert _imported_after("from usvc_http import RestAPIService") == []


_REST_SERVICE = """
import asyncio, sys
from usvc_http import RestAPIConfig, RestAPIService

class API(RestAPIService):
    name = "lazy_api"
    env_file = None
    config = RestAPIConfig(BASE_URL="http://127.0.0.1:9")

async def main():
    async with API() as api:
        print("httpx" in sys.modules)
        assert api.client.base_url == "http://127.0.0.1:9"
        print("httpx" in sys.modules)
    print(api._client is None)

asyncio.run(main())
"""


def test_httpx_is_loaded_with_the_client_not_when_the_service_starts() -> None:
    """A REST service defined and initialized (what start-up does) has not imported httpx;
    its client, built on first use, has."""
    out = subprocess.run(
        [sys.executable, "-c", _REST_SERVICE], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True", "True"]


@pytest.mark.parametrize("name", usvc_http.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(usvc_http, name).__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = usvc_http.no_such_name
