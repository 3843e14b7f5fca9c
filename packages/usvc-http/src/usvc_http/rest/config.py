"""``RestAPIConfig``: the REST client template's options, set in code and overridable per
service from the environment (``PAYMENT_API_BASE_URL`` for a service named ``payment_api``)."""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from usvc_core.errors import ConfigurationError

__all__ = ["RestAPIConfig", "base_url_problem", "env_prefix_for", "with_env_overrides"]


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
        problem = base_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


# httpx's own URL grammar (``httpx._urlparse``), so that BASE_URL is checked as the client
# will parse it without importing httpx: a service that defines its config (at import) and
# starts need not load the client library before its first request.
_URL = re.compile(r"(?:(?P<scheme>([a-zA-Z][a-zA-Z0-9+.-]*)?):)?(?://(?P<authority>[^/?#]*))?")
_AUTHORITY = re.compile(r"(?:(?P<userinfo>.*)@)?(?P<host>(\[.*\]|[^:@]*)):?(?P<port>.*)?")
_IPV4_STYLE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")
_MAX_URL_LENGTH = 65536  # httpx's limit


def base_url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable ``BASE_URL`` (None when it is): an absolute
    ``http://`` or ``https://`` URL with a host, which ``httpx.URL`` accepts.

    The same rules as ``httpx.URL`` (tested against it), without importing httpx.
    """
    if len(value) > _MAX_URL_LENGTH:
        return "not a valid URL: URL too long"
    bad = next((char for char in value if char.isascii() and not char.isprintable()), None)
    if bad is not None:
        return f"not a valid URL: invalid non-printable ASCII character {bad!r}"
    try:
        value.encode("utf-8")  # httpx percent-encodes every component as UTF-8
    except UnicodeEncodeError as exc:
        return f"not a valid URL: {exc}"
    # Both patterns match any string (every group is optional).
    url = _URL.match(value)
    assert url is not None
    authority = _AUTHORITY.match(url["authority"] or "")
    assert authority is not None
    host: str = authority["host"] or ""
    port = authority["port"]
    try:
        if _IPV4_STYLE.match(host):
            ipaddress.IPv4Address(host)
        elif host.startswith("[") and host.endswith("]"):
            ipaddress.IPv6Address(host[1:-1])
        else:
            _check_hostname(host.lower())
        if port:
            int(port)
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if (url["scheme"] or "").lower() not in ("http", "https") or not host:
        return f"must be an absolute http:// or https:// URL, got {value!r}"
    return None


def _check_hostname(host: str) -> None:
    """Raise ValueError where httpx would refuse a (lower-cased) host name: an IDNA name
    that does not encode, or an ``xn--`` label that does not decode."""
    if not host.isascii():
        import idna  # only for non-ASCII names (httpx's own dependency)

        host = idna.encode(host).decode("ascii")
    if host.startswith("xn--"):
        import idna

        idna.decode(host)


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


@cache
def _env_overrides() -> type[_OverridesBase]:
    """Every option as an optional string: only what is set is taken, and RestAPIConfig
    validates it. Built on first need (about 1.5 ms of CPU, and 2 ms more to read the
    environment through it): a service configured in code alone never builds it."""
    model: type[_OverridesBase] = create_model(
        "_EnvOverrides",
        __base__=_OverridesBase,
        **dict.fromkeys(RestAPIConfig.model_fields, (str | None, None)),  # type: ignore[call-overload]
    )
    return model


def _nothing_to_override(prefix: str, env_file: str | None) -> bool:
    """No variable can override an option: none in the environment starts with ``prefix``
    (the model matches names case-sensitively) and there is no ``env_file`` to read."""
    if any(name.startswith(prefix) for name in os.environ):
        return False
    return env_file is None or not Path(env_file).expanduser().is_file()


def with_env_overrides(
    config: RestAPIConfig, prefix: str, env_file: str | None = ".env"
) -> RestAPIConfig:
    """``config`` with every option that ``<prefix><OPTION>`` sets in the environment (or
    ``env_file``) replaced. The environment wins over code: it is the deploy-time setting.

    Raises:
        ConfigurationError: an override does not validate; the message names the variable.
    """
    if _nothing_to_override(prefix, env_file):
        return config
    found: dict[str, Any] = _env_overrides()(_env_prefix=prefix, _env_file=env_file).model_dump(
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
