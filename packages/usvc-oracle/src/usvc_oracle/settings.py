"""Settings of the Oracle queue: the spec's ORACLE_* variables plus pool and timeout options.

The names carry no package prefix (they are the spec's names). ``QUEUE_URL`` may select and
partly configure the queue: ``oracle://[user@]host[:port]/service_name[?table=NAME]``. The
password never goes in the URL (URLs end up in logs): it always comes from ORACLE_PASSWORD.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings
from usvc_core.errors import ConfigurationError
from usvc_core.settings import SETTINGS_CONFIG, WorkerSettings, describe_validation_error

from usvc_oracle.naming import TableName

__all__ = [
    "OracleSettings",
    "load_oracle_settings",
    "missing_oracle_credentials",
    "parse_oracle_url",
    "settings_for",
]


class OracleSettings(BaseSettings):
    """Everything the Oracle queue reads from the environment or ``.env``."""

    model_config = SETTINGS_CONFIG

    # --- the spec's variables ---------------------------------------------------------------
    #: Easy Connect string (``host:1521/service_name``) or a TNS alias.
    ORACLE_DSN: str = Field(default="XEPDB1", min_length=1)
    ORACLE_USER: str = ""
    ORACLE_PASSWORD: SecretStr = SecretStr("")
    #: ``TABLE`` or ``SCHEMA.TABLE``; plain Oracle names only (validated, then quoted).
    ORACLE_TABLE: str = "MICRO_SVC"

    # --- pool and timeouts ---------------------------------------------------------------------
    #: Fixed pool size (min == max): the claim loop, lease renewal, outcomes, enqueues.
    ORACLE_POOL_SIZE: int = Field(default=4, ge=1, le=64)
    #: How long an operation waits for a free pooled connection.
    ORACLE_POOL_WAIT_SECONDS: float = Field(default=10.0, gt=0)
    #: Longest single round trip before the driver gives up on it (and we drop the session).
    ORACLE_CALL_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    #: TCP connect timeout for new sessions.
    ORACLE_CONNECT_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    #: A pooled session idle longer than this is pinged before use (-1: never).
    ORACLE_PING_INTERVAL_SECONDS: int = Field(default=30, ge=-1)
    #: TCP keepalive probes every N minutes, so firewalls keep idle sessions (0: off).
    ORACLE_KEEPALIVE_MINUTES: int = Field(default=2, ge=0)
    #: Sessions are replaced after this long, to rebalance after a failover (0: never).
    ORACLE_SESSION_MAX_LIFETIME_SECONDS: int = Field(default=3600, ge=0)
    #: Quick retries of an operation that hit a lost connection or a transient error, before
    #: QueueUnavailableError hands the outage to the worker's own backoff.
    ORACLE_RETRIES: int = Field(default=3, ge=0, le=10)
    #: First delay between those retries (doubles each time, capped at 2 s, with jitter).
    ORACLE_RETRY_BACKOFF_SECONDS: float = Field(default=0.2, ge=0)

    #: A limited action whose limits row another session has held this long, while its
    #: oldest due job has waited as long, is reported (log, health YELLOW, metric).
    ORACLE_LIMIT_STALL_SECONDS: float = Field(default=120.0, gt=0)

    @field_validator("ORACLE_TABLE")
    @classmethod
    def _valid_table(cls, value: str) -> str:
        TableName.parse(value)
        return value

    @property
    def table(self) -> TableName:
        return TableName.parse(self.ORACLE_TABLE)

    def require_credentials(self) -> Self:
        """Fail, naming what is missing, when ORACLE_USER or ORACLE_PASSWORD is empty."""
        missing = missing_oracle_credentials(self.ORACLE_USER, self.ORACLE_PASSWORD)
        if missing:
            raise ConfigurationError(f"{' and '.join(missing)} required for the Oracle queue")
        return self


def missing_oracle_credentials(user: str, password: SecretStr) -> list[str]:
    """The names of the Oracle credentials that are empty."""
    return [
        name
        for name, value in (("ORACLE_USER", user), ("ORACLE_PASSWORD", password.get_secret_value()))
        if not value
    ]


def parse_oracle_url(url: str) -> dict[str, str]:
    """The settings a ``QUEUE_URL`` carries (``ORACLE_DSN``, ``ORACLE_USER``, ``ORACLE_TABLE``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "oracle":
        raise ConfigurationError(f"QUEUE_URL={url!r}: not an oracle:// URL")
    if parts.password is not None:
        raise ConfigurationError(
            "QUEUE_URL must not carry the password (URLs end up in logs): "
            "set ORACLE_PASSWORD instead"
        )
    values: dict[str, str] = {}
    if parts.hostname:
        service = unquote(parts.path.lstrip("/"))
        if not service or "/" in service:
            raise ConfigurationError(
                f"QUEUE_URL={url!r}: name the service, e.g. oracle://app@dbhost:1521/FREEPDB1"
            )
        host = parts.hostname
        port = parts.port  # raises ValueError on a bad port
        values["ORACLE_DSN"] = f"{host}:{port}/{service}" if port else f"{host}/{service}"
    elif parts.path.strip("/"):
        raise ConfigurationError(
            f"QUEUE_URL={url!r}: give a host, e.g. oracle://app@dbhost:1521/FREEPDB1 "
            "(or use oracle:// alone to take ORACLE_DSN)"
        )
    if parts.username:
        values["ORACLE_USER"] = unquote(parts.username)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"table"})
    if unknown:
        raise ConfigurationError(
            f"QUEUE_URL={url!r}: unknown option(s) {', '.join(unknown)}; only 'table' is known"
        )
    if "table" in query:
        values["ORACLE_TABLE"] = query["table"][-1]
    return values


def load_oracle_settings(**overrides: Any) -> OracleSettings:
    """Read the settings; turn pydantic's report into one clear line per mistake."""
    try:
        return OracleSettings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(
            describe_validation_error(exc, "invalid Oracle queue settings")
        ) from None


def settings_for(url: str, worker: WorkerSettings) -> OracleSettings:
    """The queue's settings: the URL's values, else the ORACLE_* values of the worker
    settings' source (explicit values, the environment, ``.env``)."""
    source = worker.source
    values: dict[str, Any] = {
        k: v for k, v in source.values.items() if k in OracleSettings.model_fields
    }
    try:
        values.update(parse_oracle_url(url or "oracle://"))
    except ValueError as exc:
        raise ConfigurationError(f"QUEUE_URL={url!r}: {exc}") from None
    settings = load_oracle_settings(_env_file=source.env_file, **values)
    missing = missing_oracle_credentials(settings.ORACLE_USER, settings.ORACLE_PASSWORD)
    if missing and not worker.QUEUE_URL:  # chosen by DEV_MODE=False: the spec's message
        raise ConfigurationError(
            f"{' and '.join(missing)} required when DEV_MODE=False "
            "(or set DEV_MODE=True for the in-memory queue, "
            "or QUEUE_URL=sqlite:///jobs.db for a local SQLite queue)"
        )
    return settings.require_credentials()
