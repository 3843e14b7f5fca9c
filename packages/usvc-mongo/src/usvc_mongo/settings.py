"""Settings of the service registry: the spec's MONGODB_* variables, read from the same
source as the core's settings (explicit values, the environment, ``.env``)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings
from usvc_core.settings import SETTINGS_CONFIG, WorkerSettings

__all__ = ["MongoSettings", "mongo_settings"]


class MongoSettings(BaseSettings):
    """Everything the registry reads; an empty ``MONGODB_URI`` turns it off."""

    model_config = SETTINGS_CONFIG

    MONGODB_URI: SecretStr = SecretStr("")
    MONGODB_DATABASE: str = "microservices"
    MONGODB_HEARTBEAT_SECONDS: float = Field(default=30, gt=0)
    MONGODB_KEY_TTL_SECONDS: int = Field(default=90, ge=1)
    MONGODB_MAX_POOL_SIZE: int = Field(default=2, ge=1)
    MONGODB_MIN_POOL_SIZE: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _check_pool(self) -> Self:
        if self.MONGODB_MIN_POOL_SIZE > self.MONGODB_MAX_POOL_SIZE:
            raise ValueError("MONGODB_MIN_POOL_SIZE must not exceed MONGODB_MAX_POOL_SIZE")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.MONGODB_URI.get_secret_value())


def mongo_settings(settings: WorkerSettings) -> MongoSettings:
    """The registry's settings from the source of the core's ``settings``."""
    return settings.source.load(MongoSettings)
