"""The ``serve`` fixture of the admin tests: start an Application with the admin surface on
an SQLite file and a free port; the test module names its ``SERVICE``, ``TOKEN`` and the
``HANDLER`` source of its one ``greet`` action."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from usvc_core import Application, WorkerSettings

Serve = Callable[..., Any]


@pytest.fixture
async def serve(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Serve]:
    handler, service, token = request.module.HANDLER, request.module.SERVICE, request.module.TOKEN
    (tmp_path / "actions" / "greet").mkdir(parents=True)
    (tmp_path / "actions" / "greet" / "handler.py").write_text(handler)
    apps: list[Application] = []

    async def start(**kw: Any) -> tuple[Application, str]:
        values: dict[str, Any] = {
            "MICROSERVICE_NAME": service,
            "QUEUE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": 0,
            "POLLING_INTERVAL_SECONDS": 0.05,
            "SHUTDOWN_TIMEOUT_SECONDS": 0.5,
            "ADMIN_TOKEN": token,
        }
        values.update(kw)
        app = Application(
            tmp_path / "actions",
            settings=WorkerSettings(_env_file=None, **values),
            configure_logging=False,
        )
        await app.start()
        apps.append(app)
        return app, f"http://127.0.0.1:{app.http_port}"

    yield start
    for app in apps:
        await app.stop()
