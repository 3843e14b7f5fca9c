"""ORACLE_TABLE validation, QUEUE_URL parsing and the queue's selection at startup."""

from __future__ import annotations

from pathlib import Path

import pytest
from usvc_core import Application
from usvc_core.errors import ConfigurationError
from usvc_core.settings import load_settings
from usvc_oracle import OracleQueue, TableName, oracle_queue_from_url
from usvc_oracle.settings import load_oracle_settings, parse_oracle_url

HOSTILE = [
    "X;DROP TABLE Y",
    'MICRO_SVC"; DROP TABLE "Y',
    '"MICRO_SVC"',
    "MICRO_SVC'",
    "MICRO_SVC--",
    "MICRO_SVC/*x*/",
    "A.B.C",
    "MICRO SVC",
    "1ABC",
    "ÄBC",
    "",
    ".X",
    "X.",
    "X" * 101,
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_table_names_are_refused(raw: str) -> None:
    """Anything but TABLE or SCHEMA.TABLE made of plain Oracle name characters is refused."""
    with pytest.raises(ValueError, match=r"plain Oracle name|SCHEMA\.TABLE|empty|longer"):
        TableName.parse(raw)


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("micro_svc", '"MICRO_SVC"'),
        ("app.Jobs", '"APP"."JOBS"'),
        ("Q$1#", '"Q$1#"'),
    ],
)
def test_plain_names_are_upper_cased_and_quoted(raw: str, quoted: str) -> None:
    """Accepted names are upper-cased (the same object as unquoted) and double-quoted."""
    assert TableName.parse(raw).quoted == quoted


@pytest.mark.parametrize("raw", HOSTILE[:7])
def test_hostile_table_fails_the_settings(raw: str) -> None:
    """The settings model refuses a hostile ORACLE_TABLE with one line naming the setting."""
    with pytest.raises(ConfigurationError, match="ORACLE_TABLE: "):
        load_oracle_settings(ORACLE_TABLE=raw)


@pytest.mark.parametrize("raw", ["X;DROP TABLE Y", "A.B.C", "T--", "T'"])
async def test_hostile_table_is_refused_at_startup(raw: str, tmp_path: Path) -> None:
    """An application selecting the Oracle queue refuses to start with a hostile table name,
    before any connection is attempted."""
    settings = load_settings(
        MICROSERVICE_NAME="svc",
        ORACLE_USER="app",
        ORACLE_PASSWORD="secret",
        ORACLE_TABLE=raw,
        HTTP_ENABLED=False,
    )
    app = Application(tmp_path, settings=settings, surfaces=[], configure_logging=False)
    with pytest.raises(ConfigurationError, match="ORACLE_TABLE"):
        await app.start()


def test_oracle_is_chosen_when_dev_mode_is_off_and_a_user_is_set(tmp_path: Path) -> None:
    """DEV_MODE=False with ORACLE_USER set selects this package's queue by entry point."""
    settings = load_settings(
        MICROSERVICE_NAME="svc", ORACLE_USER="app", ORACLE_PASSWORD="secret", DEV_MODE=False
    )
    queue = Application(tmp_path, settings=settings, configure_logging=False).queue
    assert isinstance(queue, OracleQueue)
    assert queue.settings.ORACLE_DSN == "XEPDB1"
    assert str(queue.table) == "MICRO_SVC"


def test_queue_url_carries_host_service_user_and_table(tmp_path: Path) -> None:
    """QUEUE_URL=oracle://user@host:port/service?table=... overrides the ORACLE_* settings;
    the password still comes from ORACLE_PASSWORD."""
    settings = load_settings(
        MICROSERVICE_NAME="svc",
        DEV_MODE=True,
        ORACLE_PASSWORD="secret",
        QUEUE_URL="oracle://jobs@dbhost:1521/FREEPDB1?table=app.queue",
    )
    queue = Application(tmp_path, settings=settings, configure_logging=False).queue
    assert isinstance(queue, OracleQueue)
    assert queue.settings.ORACLE_DSN == "dbhost:1521/FREEPDB1"
    assert queue.settings.ORACLE_USER == "jobs"
    assert queue.table.quoted == '"APP"."QUEUE"'
    assert "secret" not in repr(queue.settings)
    assert "secret" not in repr(queue)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("oracle://jobs:pw@dbhost/FREEPDB1", "ORACLE_PASSWORD"),
        ("oracle://dbhost:1521/", "name the service"),
        ("oracle://dbhost/FREEPDB1?pool=3", "unknown option"),
        ("oracle:///FREEPDB1", "give a host"),
        ("oracle://dbhost/FREEPDB1?table=X;DROP", "ORACLE_TABLE"),
        ("oracle://dbhost:notaport/FREEPDB1", "QUEUE_URL"),
    ],
)
def test_bad_queue_urls(url: str, why: str) -> None:
    """Each mistake in QUEUE_URL fails at startup with a message saying what to change."""
    settings = load_settings(MICROSERVICE_NAME="svc", DEV_MODE=True, ORACLE_PASSWORD="secret")
    with pytest.raises(ConfigurationError, match=why):
        oracle_queue_from_url(url, settings)


def test_bare_url_takes_everything_from_settings() -> None:
    """oracle:// alone carries nothing; the ORACLE_* settings are used."""
    assert parse_oracle_url("oracle://") == {}
    assert parse_oracle_url("oracle://dbhost/FREEPDB1") == {"ORACLE_DSN": "dbhost/FREEPDB1"}


def test_credentials_are_required(tmp_path: Path) -> None:
    """Selecting the Oracle queue by URL without a password fails, naming ORACLE_PASSWORD."""
    settings = load_settings(
        MICROSERVICE_NAME="svc", DEV_MODE=True, QUEUE_URL="oracle://app@dbhost/FREEPDB1"
    )
    with pytest.raises(ConfigurationError, match="ORACLE_PASSWORD required"):
        _ = Application(tmp_path, settings=settings, configure_logging=False).queue


def test_pool_and_timeout_defaults_are_safe() -> None:
    """The defaults: a small fixed pool, bounded waits, a few quick retries."""
    s = load_oracle_settings()
    assert (s.ORACLE_POOL_SIZE, s.ORACLE_RETRIES) == (4, 3)
    assert 0 < s.ORACLE_POOL_WAIT_SECONDS <= 30
    assert 0 < s.ORACLE_CALL_TIMEOUT_SECONDS <= 60
    with pytest.raises(ConfigurationError, match="ORACLE_POOL_SIZE"):
        load_oracle_settings(ORACLE_POOL_SIZE=0)
