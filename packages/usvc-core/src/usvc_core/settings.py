"""Worker settings: the spec's environment variables (same names and defaults), plus ours."""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from usvc_core.errors import ConfigurationError

__all__ = ["WorkerSettings", "load_settings", "missing_oracle_credentials", "queue_scheme"]

_KNOWN_SCHEMES = ("memory", "sqlite", "oracle")


class WorkerSettings(BaseSettings):
    """Everything a worker process reads from the environment or a ``.env`` file.

    Secrets are ``SecretStr``: they print as ``**********`` and are never logged.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        validate_default=True,
    )

    # --- the spec's table ---------------------------------------------------------------
    MICROSERVICE_NAME: str = Field(min_length=1, max_length=128)
    POLLING_INTERVAL_SECONDS: float = Field(default=5, gt=0)
    MAX_CONCURRENT_JOBS: int = Field(default=10, ge=1, le=1000)
    SHUTDOWN_TIMEOUT_SECONDS: float = Field(default=60, ge=0)
    JOB_TIMEOUT_SECONDS: float = Field(default=300, gt=0)
    ORACLE_DSN: str = "XEPDB1"
    ORACLE_USER: str = ""
    ORACLE_PASSWORD: SecretStr = SecretStr("")
    ORACLE_TABLE: str = "MICRO_SVC"
    LOG_CONSOLE_JSON: bool = False
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: str = ""
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: str = ""
    OTEL_EXPORTER_OTLP_USER: str = ""
    OTEL_EXPORTER_OTLP_PASSWORD: SecretStr = SecretStr("")
    HTTP_HOST: str = "0.0.0.0"
    HTTP_PORT: int = Field(default=8000, ge=0, le=65535)
    MONGODB_URI: SecretStr = SecretStr("")
    MONGODB_DATABASE: str = "microservices"
    MONGODB_HEARTBEAT_SECONDS: float = Field(default=30, gt=0)
    MONGODB_KEY_TTL_SECONDS: int = Field(default=90, ge=1)
    MONGODB_MAX_POOL_SIZE: int = Field(default=2, ge=1)
    MONGODB_MIN_POOL_SIZE: int = Field(default=1, ge=0)
    SERVICE_VERSION: str = "0.0.0"
    DEV_MODE: bool = False
    DEBUG: bool = False

    # --- the kit's additions -------------------------------------------------------------
    #: Explicit queue choice: ``memory://``, ``sqlite:///path/to/jobs.db`` or ``oracle://``.
    QUEUE_URL: str = ""
    #: How long a claim owns a job without news from its worker; extended every third of it.
    LEASE_SECONDS: float = Field(default=30, ge=1)
    #: Default number of attempts of a job (runs after a worker crash count too).
    JOB_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=1000)
    #: First delay before retrying a job whose handler raised a retryable error (doubles, capped).
    JOB_RETRY_BACKOFF_SECONDS: float = Field(default=1.0, ge=0)
    JOB_RETRY_BACKOFF_MAX_SECONDS: float = Field(default=300.0, ge=0)
    #: Finished jobs older than this are purged by the worker; 0 keeps them forever.
    JOB_RETENTION_SECONDS: float = Field(default=0, ge=0)
    #: How long ``POST /dev/job`` waits for the result before answering 504.
    DEV_JOB_WAIT_SECONDS: float = Field(default=30, gt=0)
    #: Largest request body ``POST /dev/job`` accepts.
    HTTP_MAX_BODY_BYTES: int = Field(default=1_048_576, ge=1)
    #: Set to False to run without the HTTP surface even when usvc-http is installed.
    HTTP_ENABLED: bool = True
    #: How long shutdown waits for the last spans and logs to reach the OTLP collector
    #: (also bounds shutdown when the collector is down; what is left is dropped).
    OTEL_FLUSH_TIMEOUT_SECONDS: float = Field(default=5, ge=0)

    @model_validator(mode="after")
    def _check_queue_choice(self) -> Self:
        scheme = queue_scheme(self)
        if scheme == "oracle" and not self.QUEUE_URL:
            missing = missing_oracle_credentials(self.ORACLE_USER, self.ORACLE_PASSWORD)
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} required when DEV_MODE=False "
                    "(or set DEV_MODE=True for the in-memory queue, "
                    "or QUEUE_URL=sqlite:///jobs.db for a local SQLite queue)"
                )
        if self.MONGODB_MIN_POOL_SIZE > self.MONGODB_MAX_POOL_SIZE:
            raise ValueError("MONGODB_MIN_POOL_SIZE must not exceed MONGODB_MAX_POOL_SIZE")
        return self


def missing_oracle_credentials(user: str, password: SecretStr) -> list[str]:
    """The names of the Oracle credentials that are empty (shared with usvc-oracle)."""
    return [
        name
        for name, value in (("ORACLE_USER", user), ("ORACLE_PASSWORD", password.get_secret_value()))
        if not value
    ]


def queue_scheme(settings: WorkerSettings) -> str:
    """Which queue adapter the settings choose: QUEUE_URL's scheme, else memory in dev mode,
    else Oracle (the spec's behaviour)."""
    if settings.QUEUE_URL:
        scheme = urlsplit(settings.QUEUE_URL).scheme.lower()
        if scheme not in _KNOWN_SCHEMES:
            raise ValueError(
                f"QUEUE_URL={settings.QUEUE_URL!r}: unknown scheme {scheme!r}; use "
                "memory://, sqlite:///path/to/jobs.db or oracle://"
            )
        return scheme
    return "memory" if settings.DEV_MODE else "oracle"


def load_settings(**overrides: Any) -> WorkerSettings:
    """Read the settings; turn pydantic's report into one clear line per mistake."""
    try:
        return WorkerSettings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {where}: {msg}" if where != "settings" else f"  {msg}")
        raise ConfigurationError("invalid settings:\n" + "\n".join(lines)) from None
