"""The SQLite queue: durable, shared by the worker processes of one machine."""

from usvc_testing.queues.sqlite.connection import Durability
from usvc_testing.queues.sqlite.queue import SqliteQueue
from usvc_testing.queues.sqlite.schema import SCHEMA_VERSION, SqliteFileError

__all__ = ["SCHEMA_VERSION", "Durability", "SqliteFileError", "SqliteQueue"]
