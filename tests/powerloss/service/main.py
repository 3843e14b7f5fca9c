"""A worker of the power-loss suite: the kit's real service on ``QUEUE_URL`` (an SQLite file
on the test filesystem), whose queue journals every outcome it acknowledged."""

from pathlib import Path

import sabotage  # noqa: F401 - only with POWERLOSS_SKIP_FSYNC=1
from journal import JournaledQueue
from usvc_core import Application
from usvc_core.plugins import queue_from_settings
from usvc_core.settings import WorkerSettings
from usvc_sqlite import SqliteQueue

settings = WorkerSettings()
configured = queue_from_settings(settings)  # QUEUE_URL parsed as a user's would be
assert isinstance(configured, SqliteQueue), configured
queue = JournaledQueue(
    configured.path, durability=configured.durability, busy_timeout=configured.busy_timeout
)
Application(
    actions_dir=Path(__file__).resolve().parent / "actions", settings=settings, queue=queue
).run()
