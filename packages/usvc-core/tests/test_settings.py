"""Settings: the spec's variables, defaults, validation and the queue choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from usvc_core import ConfigurationError, WorkerSettings, load_settings
from usvc_core.settings import queue_scheme

SPEC_DEFAULTS = {
    "POLLING_INTERVAL_SECONDS": 5,
    "MAX_CONCURRENT_JOBS": 10,
    "SHUTDOWN_TIMEOUT_SECONDS": 60,
    "JOB_TIMEOUT_SECONDS": 300,
    "ORACLE_DSN": "XEPDB1",
    "ORACLE_USER": "",
    "ORACLE_TABLE": "MICRO_SVC",
    "LOG_CONSOLE_JSON": False,
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
    "OTEL_EXPORTER_OTLP_USER": "",
    "HTTP_HOST": "0.0.0.0",
    "HTTP_PORT": 8000,
    "MONGODB_DATABASE": "microservices",
    "MONGODB_HEARTBEAT_SECONDS": 30,
    "MONGODB_KEY_TTL_SECONDS": 90,
    "MONGODB_MAX_POOL_SIZE": 2,
    "MONGODB_MIN_POOL_SIZE": 1,
    "SERVICE_VERSION": "0.0.0",
    "DEV_MODE": False,
    "DEBUG": False,
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [
        *SPEC_DEFAULTS,
        "MICROSERVICE_NAME",
        "ORACLE_PASSWORD",
        "QUEUE_URL",
        "MONGODB_URI",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_spec_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable of the spec's table has the spec's default."""
    monkeypatch.setenv("MICROSERVICE_NAME", "svc")
    monkeypatch.setenv("DEV_MODE", "True")
    s = WorkerSettings()
    for name, default in SPEC_DEFAULTS.items():
        expected = True if name == "DEV_MODE" else default
        assert getattr(s, name) == expected, name
    assert s.ORACLE_PASSWORD.get_secret_value() == ""
    assert s.MONGODB_URI.get_secret_value() == ""


def test_dotenv_is_read(tmp_path: Path) -> None:
    """A .env file in the working directory configures the service."""
    (tmp_path / ".env").write_text("MICROSERVICE_NAME=from-dotenv\nDEV_MODE=True\nHTTP_PORT=9001\n")
    s = load_settings()
    assert (s.MICROSERVICE_NAME, s.HTTP_PORT, s.DEV_MODE) == ("from-dotenv", 9001, True)


def test_missing_name_is_one_clear_line() -> None:
    """A missing MICROSERVICE_NAME names the variable."""
    with pytest.raises(ConfigurationError, match="MICROSERVICE_NAME: Field required"):
        load_settings(DEV_MODE=True)


def test_oracle_credentials_required_outside_dev_mode() -> None:
    """The spec's rule: ORACLE_USER and ORACLE_PASSWORD are required when DEV_MODE=False."""
    with pytest.raises(ConfigurationError, match="ORACLE_USER and ORACLE_PASSWORD required"):
        load_settings(MICROSERVICE_NAME="svc")
    with pytest.raises(ConfigurationError, match="ORACLE_PASSWORD required"):
        load_settings(MICROSERVICE_NAME="svc", ORACLE_USER="app")
    s = load_settings(MICROSERVICE_NAME="svc", ORACLE_USER="app", ORACLE_PASSWORD="pw")
    assert queue_scheme(s) == "oracle"


def test_secrets_never_print() -> None:
    """Passwords render masked in repr and str."""
    s = load_settings(MICROSERVICE_NAME="svc", ORACLE_USER="app", ORACLE_PASSWORD="hunter2")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("overrides", "scheme"),
    [
        ({"DEV_MODE": True}, "memory"),
        ({"QUEUE_URL": "sqlite:///jobs.db"}, "sqlite"),
        ({"QUEUE_URL": "memory://"}, "memory"),
        ({"QUEUE_URL": "oracle://db:1521/FREEPDB1", "ORACLE_PASSWORD": "x"}, "oracle"),
    ],
)
def test_queue_choice(overrides: dict[str, object], scheme: str) -> None:
    """QUEUE_URL wins; dev mode means memory; otherwise Oracle."""
    assert queue_scheme(load_settings(MICROSERVICE_NAME="svc", **overrides)) == scheme


def test_unknown_queue_scheme_is_refused() -> None:
    """A QUEUE_URL with an unknown scheme fails at startup saying what is allowed."""
    with pytest.raises(ConfigurationError, match="unknown scheme 'redis'"):
        load_settings(MICROSERVICE_NAME="svc", QUEUE_URL="redis://x")


def test_each_mistake_gets_a_line() -> None:
    """Two wrong values give two lines."""
    with pytest.raises(ConfigurationError) as info:
        load_settings(MICROSERVICE_NAME="svc", DEV_MODE=True, MAX_CONCURRENT_JOBS=0, HTTP_PORT=-1)
    text = str(info.value)
    assert "MAX_CONCURRENT_JOBS" in text and "HTTP_PORT" in text


def test_pool_bounds() -> None:
    """The Mongo pool minimum may not exceed its maximum."""
    with pytest.raises(ConfigurationError, match="MONGODB_MIN_POOL_SIZE"):
        load_settings(
            MICROSERVICE_NAME="svc", DEV_MODE=True, MONGODB_MIN_POOL_SIZE=5, MONGODB_MAX_POOL_SIZE=2
        )
