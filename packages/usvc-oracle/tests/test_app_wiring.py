"""The application hands the Oracle queue its health registry and metrics (the max_running
stall warning reports through them)."""

from __future__ import annotations

from pathlib import Path

from usvc_core import Application
from usvc_core.settings import WorkerSettings
from usvc_oracle import OracleQueue, OracleSettings
from usvc_oracle.queue import LIMITS_CHECK
from usvc_oracle_fake import FakeDatabase, FakePool


async def test_the_application_lets_the_queue_observe(tmp_path: Path) -> None:
    """Application start calls OracleQueue.observe with its health registry and metrics."""
    db = FakeDatabase()
    queue = OracleQueue(
        OracleSettings(ORACLE_USER="app", ORACLE_PASSWORD="secret"),
        pool_factory=lambda s: FakePool(db),
    )
    settings = WorkerSettings(
        MICROSERVICE_NAME="svc", DEV_MODE=True, HTTP_ENABLED=False, POLLING_INTERVAL_SECONDS=3600
    )
    app = Application(tmp_path, settings=settings, queue=queue, configure_logging=False)
    async with app:
        assert queue._health is app.health
        assert queue._metrics is app.metrics
        queue._limit_stalled[("svc", "slow")] = 300.0
        queue._report_stalls()
        check = app.health.get(LIMITS_CHECK)
        assert check is not None and check.status.name == "YELLOW"
