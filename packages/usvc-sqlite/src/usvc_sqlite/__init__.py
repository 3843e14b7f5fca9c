"""The SQLite queue: durable, shared by the worker processes of one machine."""

from usvc_sqlite.connection import Durability
from usvc_sqlite.queue import SqliteQueue
from usvc_sqlite.schema import SqliteFileError
from usvc_sqlite.url import sqlite_queue_from_url

__version__ = "0.1.0"

__all__ = [
    "Durability",
    "SqliteFileError",
    "SqliteQueue",
    "sqlite_queue_from_url",
]
