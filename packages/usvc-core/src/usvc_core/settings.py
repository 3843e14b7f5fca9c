"""Worker settings: the spec's environment variables the core reads (same names and
defaults), plus ours. Each adapter package owns the model of its own variables (ORACLE_* in
usvc-oracle, HTTP_* in usvc-http, MONGODB_* in usvc-mongo) and reads it from the same
:class:`SettingsSource` as the core."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from usvc_core.errors import ConfigurationError
from usvc_core.plugins import settings_models

__all__ = [
    "ENV_FILE",
    "SETTINGS_CONFIG",
    "SettingsSource",
    "WorkerSettings",
    "default_env_file",
    "describe_validation_error",
    "load_settings",
    "use_env_file",
]

#: ``scheme://...``: which scheme a QUEUE_URL names is for the installed queue packages
#: (entry points ``usvc.queues``) to answer, when the queue is built.
_URL_WITH_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

#: The dotenv file every settings model reads (relative to the working directory).
ENV_FILE = ".env"

M = TypeVar("M", bound=BaseSettings)

_default_env_file: str | Path | None = ENV_FILE


def use_env_file(path: str | Path | None) -> None:
    """Which dotenv file settings read when not told (``_env_file=``): ``.env`` unless
    changed; None reads none. usvc-testing's pytest plugin sets None for a test session, so
    that a test never reads the developer's ``.env`` unless it asks (``_env_file=".env"``)."""
    global _default_env_file  # noqa: PLW0603 - one process-wide default, by design
    _default_env_file = path


def default_env_file() -> str | Path | None:
    """The dotenv file settings read when not told (see :func:`use_env_file`)."""
    return _default_env_file


#: How every settings model of the kit reads its variables (the core's and each adapter's):
#: the environment and ``.env``, exact names, unknown variables ignored.
SETTINGS_CONFIG = SettingsConfigDict(
    env_file=ENV_FILE,
    env_file_encoding="utf-8",
    extra="ignore",
    case_sensitive=True,
    validate_default=True,
)


def _error_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}" if where else f"  {msg}")
    return lines


def describe_validation_error(exc: ValidationError, header: str = "invalid settings") -> str:
    """Pydantic's report as one clear line per mistake, naming the variable."""
    return f"{header}:\n" + "\n".join(_error_lines(exc))


@dataclass(frozen=True, slots=True, repr=False)
class SettingsSource:
    """Where one process's settings come from, in this order: values passed explicitly
    (``load_settings(**values)``, ``WorkerSettings(**values)``), the environment, the
    dotenv file. The core and every adapter read their own model from it, so a value
    passed to :class:`WorkerSettings` reaches the adapter that owns the variable."""

    values: Mapping[str, Any] = field(default_factory=dict)
    env_file: str | Path | None = field(default_factory=default_env_file)

    def __repr__(self) -> str:
        # Names only: explicit values may be secrets given as plain strings.
        return f"SettingsSource(values={sorted(self.values)}, env_file={self.env_file!r})"

    def load(self, model: type[M], header: str = "invalid settings") -> M:
        """``model`` read from this source; mistakes raise one ConfigurationError."""
        try:
            return self._read(model)
        except ValidationError as exc:
            raise ConfigurationError(describe_validation_error(exc, header)) from None

    def _read(self, model: type[M]) -> M:
        given = {k: v for k, v in self.values.items() if k in model.model_fields}
        return model(_env_file=self.env_file, **given)

    def get(self, name: str) -> str | None:
        """The raw value of one variable, whichever model owns it (None when unset)."""
        if name in self.values:
            value = self.values[name]
            return value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if name in os.environ:
            return os.environ[name]
        if self.env_file is not None and Path(self.env_file).is_file():
            return dotenv_values(self.env_file).get(name)
        return None


class WorkerSettings(BaseSettings):
    """Everything a worker process reads from the environment or a ``.env`` file.

    Secrets are ``SecretStr``: they print as ``**********`` and are never logged.
    :attr:`source` tells adapters where these came from, to read their own variables.
    """

    model_config = SETTINGS_CONFIG

    # --- the spec's table ---------------------------------------------------------------
    MICROSERVICE_NAME: str = Field(min_length=1, max_length=128)
    POLLING_INTERVAL_SECONDS: float = Field(default=5, gt=0)
    MAX_CONCURRENT_JOBS: int = Field(default=10, ge=1, le=1000)
    SHUTDOWN_TIMEOUT_SECONDS: float = Field(default=60, ge=0)
    JOB_TIMEOUT_SECONDS: float = Field(default=300, gt=0)
    LOG_CONSOLE_JSON: bool = False
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: str = ""
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: str = ""
    OTEL_EXPORTER_OTLP_USER: str = ""
    OTEL_EXPORTER_OTLP_PASSWORD: SecretStr = SecretStr("")
    SERVICE_VERSION: str = "0.0.0"
    DEV_MODE: bool = False
    DEBUG: bool = False

    # --- the kit's additions -------------------------------------------------------------
    #: Explicit queue choice: ``memory://``, ``sqlite:///path/to/jobs.db``, ``oracle://``, or
    #: the scheme of any installed queue package (entry points ``usvc.queues``).
    QUEUE_URL: str = ""
    #: How long a claim owns a job without news from its worker; extended every third of it.
    LEASE_SECONDS: float = Field(default=30, ge=1)
    #: How often a worker records itself in the store (its heartbeat); one silent for two
    #: heartbeats is gone and its jobs go back to Ready at once, without waiting for their
    #: leases. 0 turns the records off (dead workers are then noticed at lease expiry).
    WORKER_HEARTBEAT_SECONDS: float = Field(default=1.5, ge=0, le=3600)
    #: Where each count of the worker's queue statistics sample (``queue_depth``, every
    #: 15 s) stops: a count at the limit means at least that many, and the sample costs
    #: the same at any depth. 0 counts exactly (every Ready row, per worker, per sample).
    QUEUE_STATS_COUNT_LIMIT: int = Field(default=10_000, ge=0)
    #: Default number of attempts of a job (runs after a worker crash count too).
    JOB_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=1000)
    #: First delay before retrying a job whose handler raised a retryable error (doubles, capped).
    JOB_RETRY_BACKOFF_SECONDS: float = Field(default=1.0, ge=0)
    JOB_RETRY_BACKOFF_MAX_SECONDS: float = Field(default=300.0, ge=0)
    #: Finished jobs older than this are purged by the worker; 0 keeps them forever.
    JOB_RETENTION_SECONDS: float = Field(default=0, ge=0)
    #: How many attempts of each job the queue keeps in its history (the last ones).
    JOB_ATTEMPT_HISTORY: int = Field(default=20, ge=1, le=1000)
    #: How long shutdown waits for the last spans and logs to reach the OTLP collector
    #: (also bounds shutdown when the collector is down; what is left is dropped).
    OTEL_FLUSH_TIMEOUT_SECONDS: float = Field(default=5, ge=0)
    #: Periodic jobs from the settings, as JSON: ``{"report": "*/15 * * * *"}`` or
    #: ``{"report": {"cron": "0 6 * * *", "timezone": "Europe/Berlin"}}``. An action named
    #: here takes this schedule instead of its ``@action(schedule=...)``.
    SCHEDULES: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    #: At start-up, the most recent missed slot of a schedule is enqueued when it is at most
    #: this old; older ones are skipped (and logged).
    SCHEDULE_CATCHUP_SECONDS: float = Field(default=300, ge=0)

    _source: SettingsSource = PrivateAttr(default_factory=SettingsSource)

    def __init__(self, **values: Any) -> None:
        env_file = values.pop("_env_file", _default_env_file)
        super().__init__(_env_file=env_file, **values)
        self._source = SettingsSource(
            {k: v for k, v in values.items() if not k.startswith("_")}, env_file
        )

    @property
    def source(self) -> SettingsSource:
        """Where these settings came from; adapters load their own models from it."""
        return self._source

    @model_validator(mode="after")
    def _check_queue_url(self) -> Self:
        if self.QUEUE_URL and not _URL_WITH_SCHEME.match(self.QUEUE_URL):
            raise ValueError(
                f"QUEUE_URL={self.QUEUE_URL!r} is not a URL: write scheme://..., e.g. "
                "sqlite:///jobs.db, memory:// or oracle://"
            )
        return self

    @model_validator(mode="after")
    def _check_schedules(self) -> Self:
        for name, entry in self.SCHEDULES.items():
            if isinstance(entry, dict):
                unknown = sorted(set(entry) - {"cron", "timezone"})
                if "cron" not in entry or unknown:
                    raise ValueError(
                        f"SCHEDULES[{name!r}] must be a cron string or an object with "
                        f'"cron" and optionally "timezone"'
                        + (f" (unknown keys: {', '.join(unknown)})" if unknown else "")
                    )
        return self


def load_settings(**overrides: Any) -> WorkerSettings:
    """Read the core's settings and check those of every installed adapter (entry points
    ``usvc.settings``) from the same source: one ConfigurationError with one clear line per
    mistake, whichever package owns the variable. Adapters read their own model from the
    result's :attr:`~WorkerSettings.source` when they start."""
    lines: list[str] = []
    settings: WorkerSettings | None = None
    try:
        settings = WorkerSettings(**overrides)
        source = settings.source
    except ValidationError as exc:
        lines += _error_lines(exc)
        source = SettingsSource(
            {k: v for k, v in overrides.items() if not k.startswith("_")},
            overrides.get("_env_file", _default_env_file),
        )
    for model in settings_models():
        try:
            source._read(model)
        except ValidationError as exc:
            lines += _error_lines(exc)
    if lines:
        raise ConfigurationError("invalid settings:\n" + "\n".join(lines))
    assert settings is not None
    return settings
