"""Settings of the HTTP surface: the spec's HTTP_* variables plus ours, read from the same
source as the core's settings (explicit values, the environment, ``.env``)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings
from usvc_core.settings import SETTINGS_CONFIG, WorkerSettings

__all__ = ["MIN_TOKEN_DISTINCT", "MIN_TOKEN_LENGTH", "HttpSettings", "http_settings"]

MIN_TOKEN_LENGTH = 32
MIN_TOKEN_DISTINCT = 10
_MAKE_ONE = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


class HttpSettings(BaseSettings):
    """Everything the HTTP surface reads."""

    model_config = SETTINGS_CONFIG

    # --- the spec's variables ---------------------------------------------------------------
    HTTP_HOST: str = "0.0.0.0"
    HTTP_PORT: int = Field(default=8000, ge=0, le=65535)

    # --- the kit's additions -----------------------------------------------------------------
    #: Set to False to run without the HTTP surface even when usvc-http is installed.
    HTTP_ENABLED: bool = True
    #: Largest request body any route accepts (``/dev/job``, the admin API, login, logout);
    #: a larger one is refused with 413 while it streams in.
    HTTP_MAX_BODY_BYTES: int = Field(default=1_048_576, ge=1)
    #: Addresses (or networks, comma-separated) of the reverse proxies whose
    #: ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed; empty: none are.
    HTTP_TRUSTED_PROXIES: str = ""
    #: How long ``POST /dev/job`` waits for the result before answering 504.
    DEV_JOB_WAIT_SECONDS: float = Field(default=30, gt=0)
    #: Turns on the admin API (/admin/api) and dashboard (/admin/): the bearer token, and
    #: the password of the dashboard's login. Empty: the /admin tree does not exist.
    ADMIN_TOKEN: SecretStr = SecretStr("")
    #: The dashboard's address as browsers see it behind a proxy (``https://ops.example``):
    #: the only Origin its state-changing requests may come from; https makes the session
    #: cookie ``Secure``. Empty: the request's own scheme and Host.
    ADMIN_PUBLIC_ORIGIN: str = ""
    #: Failed dashboard logins one client address may make per minute before 429.
    ADMIN_LOGIN_ATTEMPTS_PER_MINUTE: int = Field(default=10, ge=1, le=10_000)

    @field_validator("ADMIN_TOKEN")
    @classmethod
    def _strong_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if not token:
            return value
        if token != token.strip():
            raise ValueError(f"the token starts or ends with whitespace; {_MAKE_ONE}")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the token has {len(token)} characters, fewer than {MIN_TOKEN_LENGTH}; {_MAKE_ONE}"
            )
        if len(set(token)) < MIN_TOKEN_DISTINCT:
            raise ValueError(
                f"the token has {len(set(token))} distinct characters, fewer than "
                f"{MIN_TOKEN_DISTINCT}; {_MAKE_ONE}"
            )
        return value

    @field_validator("HTTP_TRUSTED_PROXIES")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if not entry or entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an address or network (e.g. 127.0.0.1, 10.0.0.0/8, *)"
                ) from None
        return value

    @field_validator("ADMIN_PUBLIC_ORIGIN")
    @classmethod
    def _origin(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in "/":
            raise ValueError(
                f"{value!r} is not an origin: scheme and host only, e.g. https://ops.example.com"
            )
        return f"{parts.scheme}://{parts.netloc}".lower()


def http_settings(settings: WorkerSettings) -> HttpSettings:
    """The HTTP settings from the source of the core's ``settings``; mistakes raise one
    ConfigurationError, one line per variable."""
    return settings.source.load(HttpSettings)
