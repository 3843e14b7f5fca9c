"""Settings of the PostgreSQL queue: ``POSTGRES_*`` variables, and ``QUEUE_URL``.

``QUEUE_URL=postgresql://[user@]host[:port]/dbname[?table=NAME&pgbouncer=true]`` selects
the queue and may carry the connection; ``postgresql://`` alone takes everything from the
``POSTGRES_*`` variables. The password never goes in the URL (URLs end up in logs): it
comes from ``POSTGRES_PASSWORD``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings
from usvc_core.errors import ConfigurationError
from usvc_core.settings import SETTINGS_CONFIG, WorkerSettings

__all__ = ["ListenMode", "PostgresSettings", "parse_postgres_url", "settings_for"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,50}")
_URL_OPTIONS = {"table": "POSTGRES_TABLE", "pgbouncer": "POSTGRES_PGBOUNCER"}


class ListenMode(StrEnum):
    """How workers learn of new jobs beside polling (``POSTGRES_LISTEN``)."""

    #: LISTEN on a connection of its own, checked with a probe NOTIFY; polling when the
    #: probe does not come back (PgBouncer in transaction pooling, a proxy)
    AUTO = "auto"
    ON = "on"  #: LISTEN; fail at open when it cannot
    OFF = "off"  #: polling only (``POLLING_INTERVAL_SECONDS``)


class PostgresSettings(BaseSettings):
    """Everything the PostgreSQL queue reads from the environment or ``.env``."""

    model_config = SETTINGS_CONFIG

    POSTGRES_HOST: str = "localhost"
    POSTGRES_PORT: int = Field(default=5432, ge=1, le=65535)
    POSTGRES_DB: str = "postgres"
    POSTGRES_USER: str = "postgres"
    POSTGRES_PASSWORD: SecretStr = SecretStr("")
    #: The jobs table (lower-case letters, digits, ``_``); its indexes and notification
    #: channel are named after it.
    POSTGRES_TABLE: str = "usvc_jobs"
    #: Connections per process: claims, lease renewals, outcomes, enqueues share them.
    POSTGRES_POOL_SIZE: int = Field(default=10, ge=1, le=200)
    #: A statement running longer than this is cancelled by the server.
    POSTGRES_STATEMENT_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    #: A session that leaves a transaction open this long (a frozen or half-dead worker
    #: inside a claim) is ended by the server, releasing its row locks and claim lock.
    POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    #: Server-side TCP keepalive: idle seconds before the first probe (and between probes;
    #: 3 unanswered probes end the session), so a vanished client's session ends.
    POSTGRES_TCP_KEEPALIVE_SECONDS: int = Field(default=10, ge=1)
    #: Connecting gives up after this long (the worker retries with backoff).
    POSTGRES_CONNECT_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0)
    #: A round trip that gets no answer in this long counts as a lost connection.
    POSTGRES_COMMAND_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    POSTGRES_LISTEN: ListenMode = ListenMode.AUTO
    #: PgBouncer in transaction pooling in front: no prepared statements, no session
    #: settings, no LISTEN (polling only).
    POSTGRES_PGBOUNCER: bool = False
    #: Create the table and indexes at open when missing (off: ``python -m usvc_postgres
    #: apply`` is run by a privileged role, and the workers only check).
    POSTGRES_CREATE_SCHEMA: bool = True

    @field_validator("POSTGRES_TABLE")
    @classmethod
    def _valid_table(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a plain table name: use lower-case letters, digits and _ "
                "(at most 51 characters, not starting with a digit)"
            )
        return value

    def connect_kwargs(self) -> dict[str, Any]:
        """What ``asyncpg.connect`` / ``create_pool`` needs to reach the server."""
        password = self.POSTGRES_PASSWORD.get_secret_value()
        return {
            "host": self.POSTGRES_HOST,
            "port": self.POSTGRES_PORT,
            "database": self.POSTGRES_DB,
            "user": self.POSTGRES_USER,
            "password": password or None,
            "timeout": self.POSTGRES_CONNECT_TIMEOUT_SECONDS,
        }

    def where(self) -> str:
        """The server, for messages (no password)."""
        return (
            f"postgresql://{self.POSTGRES_USER}@{self.POSTGRES_HOST}:{self.POSTGRES_PORT}/"
            f"{self.POSTGRES_DB} (table {self.POSTGRES_TABLE})"
        )


def parse_postgres_url(url: str) -> dict[str, str]:
    """The ``POSTGRES_*`` values a ``QUEUE_URL`` carries."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"QUEUE_URL={url!r}: not a postgresql:// URL")
    if parts.password is not None:
        raise ConfigurationError(
            "QUEUE_URL must not carry the password (URLs end up in logs): "
            "set POSTGRES_PASSWORD instead"
        )
    values: dict[str, str] = {}
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"QUEUE_URL={url!r}: the port is not a number") from None
    if parts.hostname:
        values["POSTGRES_HOST"] = parts.hostname
    if port is not None:
        values["POSTGRES_PORT"] = str(port)
    if parts.username:
        values["POSTGRES_USER"] = unquote(parts.username)
    database = unquote(parts.path.lstrip("/"))
    if "/" in database:
        raise ConfigurationError(
            f"QUEUE_URL={url!r}: name one database, e.g. postgresql://app@dbhost:5432/jobs"
        )
    if database:
        values["POSTGRES_DB"] = database
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_URL_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"QUEUE_URL={url!r}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(_URL_OPTIONS)}"
        )
    for option, value in options.items():
        values[_URL_OPTIONS[option]] = value
    return values


def settings_for(url: str, worker: WorkerSettings) -> PostgresSettings:
    """The queue's settings: the URL's values over the ``POSTGRES_*`` values of the worker
    settings' source (explicit values, the environment, ``.env``)."""
    source = worker.source
    values: dict[str, Any] = {
        k: v for k, v in source.values.items() if k in PostgresSettings.model_fields
    }
    values.update(parse_postgres_url(url or "postgresql://"))
    merged = type(source)(values=values, env_file=source.env_file)
    return merged.load(PostgresSettings, "invalid PostgreSQL queue settings")
