"""``RestAPIConfig``: the REST client template's options, set in code and overridable per
service from the environment (``PAYMENT_API_BASE_URL`` for a service named ``payment_api``)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from usvc_core.errors import ConfigurationError

__all__ = ["RestAPIConfig", "env_prefix_for", "with_env_overrides"]


class RestAPIConfig(BaseModel):
    """Options of one :class:`~usvc_http.RestAPIService`; the first ten are the spec's table.

    Every option can be overridden at deploy time by an environment variable (or ``.env``
    line) named ``<PREFIX><OPTION>``, where the prefix comes from the service's ``name``:
    see :func:`env_prefix_for`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    BASE_URL: str = "http://localhost:8000"
    RATE_LIMIT_REQUESTS: int = Field(default=100, ge=1)
    RATE_LIMIT_WINDOW_SECONDS: float = Field(default=60.0, gt=0)
    CB_FAILURE_THRESHOLD: int = Field(default=5, ge=1)
    CB_RECOVERY_TIMEOUT: float = Field(default=30.0, ge=0)
    CB_SUCCESS_THRESHOLD: int = Field(default=2, ge=1)
    REQUEST_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    MAX_RETRIES: int = Field(default=3, ge=0)
    RETRY_BACKOFF_BASE: float = Field(default=1.0, ge=0)
    CONNECTION_POOL_SIZE: int = Field(default=10, ge=1)
    #: The kit's addition: the longest wait between two attempts. A Retry-After asking for
    #: more ends the retries and hands the response to the caller.
    RETRY_BACKOFF_MAX_SECONDS: float = Field(default=60.0, ge=0)

    @field_validator("BASE_URL")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"must be an absolute http:// or https:// URL, got {value!r}")
        return value


def env_prefix_for(service_name: str) -> str:
    """The environment prefix of a service: its name upper-cased, every run of characters
    other than letters and digits turned into ``_``, plus a trailing ``_``.

    ``payment_api`` -> ``PAYMENT_API_``; ``billing-v2`` -> ``BILLING_V2_``.
    """
    stem = re.sub(r"[^0-9A-Za-z]+", "_", service_name).strip("_").upper()
    if not stem:
        raise ConfigurationError(f"service name {service_name!r} gives no environment prefix")
    return f"{stem}_"


class _OverridesBase(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )


# Every option as an optional string: only what is set is taken, and RestAPIConfig validates it.
_EnvOverrides: type[_OverridesBase] = create_model(
    "_EnvOverrides",
    __base__=_OverridesBase,
    **dict.fromkeys(RestAPIConfig.model_fields, (str | None, None)),  # type: ignore[call-overload]
)


def with_env_overrides(
    config: RestAPIConfig, prefix: str, env_file: str | None = ".env"
) -> RestAPIConfig:
    """``config`` with every option that ``<prefix><OPTION>`` sets in the environment (or
    ``env_file``) replaced. The environment wins over code: it is the deploy-time setting.

    Raises:
        ConfigurationError: an override does not validate; the message names the variable.
    """
    found: dict[str, Any] = _EnvOverrides(_env_prefix=prefix, _env_file=env_file).model_dump(
        exclude_none=True
    )
    if not found:
        return config
    try:
        return RestAPIConfig.model_validate({**config.model_dump(), **found})
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid REST API setting: {problems}") from None
