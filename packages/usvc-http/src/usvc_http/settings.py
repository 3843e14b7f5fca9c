"""Settings of the HTTP surface: the spec's HTTP_* variables plus ours, read from the same
source as the core's settings (explicit values, the environment, ``.env``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings
from usvc_core.settings import SETTINGS_CONFIG, WorkerSettings

__all__ = ["HttpSettings", "http_settings"]


class HttpSettings(BaseSettings):
    """Everything the HTTP surface reads."""

    model_config = SETTINGS_CONFIG

    # --- the spec's variables ---------------------------------------------------------------
    HTTP_HOST: str = "0.0.0.0"
    HTTP_PORT: int = Field(default=8000, ge=0, le=65535)

    # --- the kit's additions -----------------------------------------------------------------
    #: Set to False to run without the HTTP surface even when usvc-http is installed.
    HTTP_ENABLED: bool = True
    #: Largest request body ``POST /dev/job`` accepts.
    HTTP_MAX_BODY_BYTES: int = Field(default=1_048_576, ge=1)
    #: How long ``POST /dev/job`` waits for the result before answering 504.
    DEV_JOB_WAIT_SECONDS: float = Field(default=30, gt=0)
    #: Turns on the admin API (/admin/api) and dashboard (/admin/): the bearer token, and
    #: the password of the dashboard's login. Empty: the /admin tree does not exist.
    ADMIN_TOKEN: SecretStr = SecretStr("")


def http_settings(settings: WorkerSettings) -> HttpSettings:
    """The HTTP settings from the source of the core's ``settings``; mistakes raise one
    ConfigurationError, one line per variable."""
    return settings.source.load(HttpSettings)
