"""Settings: the spec's variables, defaults, validation and the queue choice; each
adapter's model is read from the same source as the core's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings
from usvc_core import Application, ConfigurationError, WorkerSettings, load_settings
from usvc_core.errors import MissingPackageError
from usvc_core.plugins import queue_from_settings, queue_scheme, settings_models
from usvc_core.settings import SettingsSource
from usvc_http.settings import HttpSettings
from usvc_mongo.settings import MongoSettings
from usvc_oracle.settings import OracleSettings

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


MODELS: list[type[BaseSettings]] = [WorkerSettings, HttpSettings, MongoSettings, OracleSettings]


def owner(name: str) -> type[BaseSettings]:
    [model] = [m for m in MODELS if name in m.model_fields]
    return model


def test_spec_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable of the spec's table has the spec's default, in the model of the package
    that uses it (the core's, or the adapter's), all read from one source."""
    monkeypatch.setenv("MICROSERVICE_NAME", "svc")
    monkeypatch.setenv("DEV_MODE", "True")
    s = WorkerSettings()
    loaded = {model: s.source.load(model) for model in MODELS[1:]} | {WorkerSettings: s}
    for name, default in SPEC_DEFAULTS.items():
        expected = True if name == "DEV_MODE" else default
        assert getattr(loaded[owner(name)], name) == expected, name
    assert loaded[OracleSettings].ORACLE_PASSWORD.get_secret_value() == ""
    assert loaded[MongoSettings].MONGODB_URI.get_secret_value() == ""


def test_core_keeps_only_its_own_variables() -> None:
    """ORACLE_*, HTTP_* and MONGODB_* belong to the adapters' models, not the core's."""
    fields = set(WorkerSettings.model_fields)
    assert not {f for f in fields if f.startswith(("ORACLE_", "HTTP_", "MONGODB_"))}
    assert {"HTTP_PORT", "HTTP_HOST", "HTTP_ENABLED"} <= set(HttpSettings.model_fields)
    assert {"MONGODB_URI", "MONGODB_HEARTBEAT_SECONDS"} <= set(MongoSettings.model_fields)


@pytest.fixture
def service_dotenv() -> Iterator[None]:
    """The service's default (read ./.env), which usvc-testing's plugin turns off in tests."""
    from usvc_core.settings import ENV_FILE, default_env_file, use_env_file

    before = default_env_file()
    use_env_file(ENV_FILE)
    yield
    use_env_file(before)


@pytest.mark.usefixtures("service_dotenv")
def test_dotenv_is_read(tmp_path: Path) -> None:
    """A .env file in the working directory configures the service and its adapters."""
    (tmp_path / ".env").write_text("MICROSERVICE_NAME=from-dotenv\nDEV_MODE=True\nHTTP_PORT=9001\n")
    s = load_settings()
    http = s.source.load(HttpSettings)
    assert (s.MICROSERVICE_NAME, http.HTTP_PORT, s.DEV_MODE) == ("from-dotenv", 9001, True)


def test_explicit_values_reach_the_adapter_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values passed to WorkerSettings win over the environment, for every model."""
    monkeypatch.setenv("HTTP_PORT", "9100")
    monkeypatch.setenv("MONGODB_DATABASE", "from-env")
    s = WorkerSettings(
        _env_file=None, MICROSERVICE_NAME="svc", DEV_MODE=True, HTTP_PORT=0, MONGODB_URI="m://h"
    )
    assert s.source.load(HttpSettings).HTTP_PORT == 0
    mongo = s.source.load(MongoSettings)
    assert (mongo.MONGODB_URI.get_secret_value(), mongo.MONGODB_DATABASE) == ("m://h", "from-env")
    assert s.source.get("MONGODB_URI") == "m://h"
    assert s.source.get("MONGODB_DATABASE") == "from-env"
    assert s.source.get("NOT_SET_ANYWHERE") is None


def test_source_get_reads_the_dotenv_file(tmp_path: Path) -> None:
    """A variable only in the dotenv file is seen by the raw lookup (the core uses it to
    name the package a setting needs)."""
    (tmp_path / "custom.env").write_text("MONGODB_URI=mongodb://db/\n")
    source = SettingsSource({}, tmp_path / "custom.env")
    assert source.get("MONGODB_URI") == "mongodb://db/"
    assert SettingsSource({}, None).get("MONGODB_URI") is None


def test_installed_adapters_register_their_models() -> None:
    """load_settings checks the models the adapters register (entry points usvc.settings)."""
    assert {HttpSettings, MongoSettings} <= set(settings_models())


def test_missing_name_is_one_clear_line() -> None:
    """A missing MICROSERVICE_NAME names the variable."""
    with pytest.raises(ConfigurationError, match="MICROSERVICE_NAME: Field required"):
        load_settings(DEV_MODE=True)


def test_oracle_credentials_required_outside_dev_mode() -> None:
    """The spec's rule: ORACLE_USER and ORACLE_PASSWORD are required when DEV_MODE=False;
    the Oracle adapter says so, with the spec's message, when the queue is built."""
    message = "ORACLE_USER and ORACLE_PASSWORD required when DEV_MODE=False"
    with pytest.raises(ConfigurationError, match=message):
        queue_from_settings(load_settings(MICROSERVICE_NAME="svc"))
    with pytest.raises(ConfigurationError, match="ORACLE_PASSWORD required when DEV_MODE"):
        queue_from_settings(load_settings(MICROSERVICE_NAME="svc", ORACLE_USER="app"))
    s = load_settings(MICROSERVICE_NAME="svc", ORACLE_USER="app", ORACLE_PASSWORD="pw")
    assert queue_scheme(s) == "oracle"
    queue = queue_from_settings(s)
    assert type(queue).__name__ == "OracleQueue"


def test_secrets_never_print() -> None:
    """Passwords render masked in repr and str."""
    s = load_settings(MICROSERVICE_NAME="svc", ORACLE_USER="app", ORACLE_PASSWORD="hunter2")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    assert "hunter2" not in repr(s.source.load(OracleSettings))
    assert "hunter2" not in repr(s.source)


@pytest.mark.usefixtures("service_dotenv")
def test_unknown_package_setting_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MONGODB_URI set (here: only in .env) while the registry's package is absent fails at
    start naming usvc-mongo."""
    from usvc_core import plugins

    real = plugins.named_entry_points

    def without_mongo(group: str) -> dict[str, object]:
        return {k: v for k, v in real(group).items() if k != "mongo_registry"}

    monkeypatch.setattr(plugins, "named_entry_points", without_mongo)
    monkeypatch.setattr("usvc_core.app.named_entry_points", without_mongo)
    (tmp_path / ".env").write_text("MONGODB_URI=mongodb://db/\n")
    app = Application(
        tmp_path, settings=load_settings(MICROSERVICE_NAME="svc", DEV_MODE=True, HTTP_ENABLED=0)
    )
    with pytest.raises(MissingPackageError, match=r"MONGODB_URI is set.*uv add usvc-mongo"):
        app._surface_factories_from_settings()


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


def test_queue_url_without_a_scheme_is_refused() -> None:
    """A QUEUE_URL that is no URL fails at startup, naming the variable."""
    with pytest.raises(ConfigurationError, match=r"QUEUE_URL='jobs.db' is not a URL"):
        load_settings(MICROSERVICE_NAME="svc", QUEUE_URL="jobs.db")


class _EntryPoint:
    """Stands for an installed ``usvc.queues`` entry point of a third-party package."""

    def __init__(self, name: str, target: object) -> None:
        self.name, self._target = name, target

    def load(self) -> object:
        return self._target


def test_a_third_party_queue_scheme_loads_from_its_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Which schemes exist is the installed entry points' answer: a scheme the kit never
    heard of passes the settings and is built by its package's factory."""
    from usvc_core import plugins
    from usvc_testing.queues import InMemoryQueue

    built: list[str] = []

    def redis_queue(url: str, settings: WorkerSettings) -> InMemoryQueue:
        built.append(url)
        return InMemoryQueue()

    real = plugins.named_entry_points

    def with_redis(group: str) -> dict[str, object]:
        eps: dict[str, object] = dict(real(group))
        if group == plugins.QUEUE_GROUP:
            eps["redis"] = _EntryPoint("redis", redis_queue)
        return eps

    monkeypatch.setattr(plugins, "named_entry_points", with_redis)
    settings = load_settings(MICROSERVICE_NAME="svc", QUEUE_URL="redis://cache:6379/0")
    assert isinstance(queue_from_settings(settings), InMemoryQueue)
    assert built == ["redis://cache:6379/0"]


def test_an_unknown_scheme_lists_the_installed_queues_and_the_package_to_add(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scheme no installed package provides fails when the queue is built, listing the
    installed schemes; for one of the kit's own, naming the package to add."""
    from usvc_core import plugins

    with pytest.raises(ConfigurationError) as info:
        queue_from_settings(load_settings(MICROSERVICE_NAME="svc", QUEUE_URL="redis://x"))
    message = str(info.value)
    assert "no installed package provides the queue scheme 'redis'" in message
    assert "memory://" in message and "oracle://" in message
    assert "entry point 'redis' in the group usvc.queues" in message

    real = plugins.named_entry_points
    monkeypatch.setattr(
        plugins,
        "named_entry_points",
        lambda group: {k: v for k, v in real(group).items() if k not in ("oracle", "postgresql")},
    )
    with pytest.raises(MissingPackageError, match=r"uv add usvc-postgres"):
        queue_from_settings(
            load_settings(MICROSERVICE_NAME="svc", QUEUE_URL="postgresql://db/jobs")
        )
    with pytest.raises(MissingPackageError) as missing:
        queue_from_settings(load_settings(MICROSERVICE_NAME="svc", QUEUE_URL="oracle://db/x"))
    assert "uv add usvc-oracle" in str(missing.value)
    assert "oracle://" not in str(missing.value).split("installed queues:")[1]


def test_settings_and_the_plugin_loader_import_without_a_circle() -> None:
    """plugins.py needs nothing of settings.py at run time: each imports alone, in a fresh
    interpreter, in either order."""
    import subprocess
    import sys

    for first in ("usvc_core.plugins", "usvc_core.settings"):
        code = (
            f"import sys; import {first}; "
            "assert 'usvc_core.settings' not in sys.modules or "
            f"{first!r} == 'usvc_core.settings'"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


def test_each_mistake_gets_a_line() -> None:
    """Wrong values of the core and of adapters give one message, one line each."""
    with pytest.raises(ConfigurationError) as info:
        load_settings(
            MICROSERVICE_NAME="svc",
            DEV_MODE=True,
            MAX_CONCURRENT_JOBS=0,
            HTTP_PORT=-1,
            MONGODB_HEARTBEAT_SECONDS=0,
        )
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid settings:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "MAX_CONCURRENT_JOBS",
        "HTTP_PORT",
        "MONGODB_HEARTBEAT_SECONDS",
    ]
    assert "HTTP_PORT: Input should be greater than or equal to 0" in str(info.value)


def test_adapter_mistakes_also_show_when_the_core_is_fine() -> None:
    """An adapter's wrong value alone still fails load_settings with its line."""
    with pytest.raises(ConfigurationError, match="HTTP_PORT: Input should be less than"):
        load_settings(MICROSERVICE_NAME="svc", DEV_MODE=True, HTTP_PORT=70000)
    with pytest.raises(ConfigurationError, match="HTTP_PORT: Input should be less than"):
        WorkerSettings(MICROSERVICE_NAME="svc", DEV_MODE=True, HTTP_PORT=70000).source.load(
            HttpSettings
        )


def test_secret_values_pass_through_the_source() -> None:
    """A SecretStr given explicitly reaches the adapter's model unchanged."""
    s = WorkerSettings(
        _env_file=None,
        MICROSERVICE_NAME="svc",
        DEV_MODE=True,
        MONGODB_URI=SecretStr("mongodb://u:pw@h/"),
    )
    assert s.source.load(MongoSettings).MONGODB_URI.get_secret_value() == "mongodb://u:pw@h/"


def test_pool_bounds() -> None:
    """The Mongo pool minimum may not exceed its maximum."""
    with pytest.raises(ConfigurationError, match="MONGODB_MIN_POOL_SIZE"):
        load_settings(
            MICROSERVICE_NAME="svc", DEV_MODE=True, MONGODB_MIN_POOL_SIZE=5, MONGODB_MAX_POOL_SIZE=2
        )
