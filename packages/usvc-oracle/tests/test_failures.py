"""Sorting driver errors into drop-and-retry, retry, and give-up-with-a-hint."""

from __future__ import annotations

import pytest
from oracledb import errors as ora_errors
from usvc_oracle.failures import FailureKind, classify, constraint_name
from usvc_oracle_fake import connection_lost, ora_error


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (connection_lost(), FailureKind.DEAD, "DPY-4011"),
        (ora_error("ORA-03135: connection lost contact", code=3135), FailureKind.DEAD, "DPY-4011"),
        (ora_errors._create_exception(ora_errors.ERR_NOT_CONNECTED), FailureKind.DEAD, "DPY-1001"),
        (
            ora_errors._create_exception(ora_errors.ERR_CALL_TIMEOUT_EXCEEDED, timeout=5),
            FailureKind.DEAD,
            "DPY-4024",
        ),
        (
            ora_errors._create_exception(ora_errors.ERR_POOL_NO_CONNECTION_AVAILABLE),
            FailureKind.TRANSIENT,
            "DPY-4005",
        ),
        (ora_error("ORA-00060: deadlock detected", code=60), FailureKind.TRANSIENT, "ORA-00060"),
        (
            ora_error("ORA-12514: listener does not know of service", code=12514),
            FailureKind.TRANSIENT,
            "ORA-12514",
        ),
        (
            ora_error("ORA-01033: ORACLE initialization in progress", code=1033),
            FailureKind.TRANSIENT,
            "ORA-01033",
        ),
        (
            ora_error("ORA-00942: table or view does not exist", code=942),
            FailureKind.PERMANENT,
            "ORA-00942",
        ),
        (ora_error("ORA-01017: invalid credential", code=1017), FailureKind.PERMANENT, "ORA-01017"),
        (ora_error("ORA-01109: database not open", code=1109), FailureKind.TRANSIENT, "ORA-01109"),
        (
            ora_error("ORA-00020: maximum number of processes exceeded", code=20),
            FailureKind.TRANSIENT,
            "ORA-00020",
        ),
        (
            ora_error("ORA-00257: Archiver error. Connect AS SYSDBA only", code=257),
            FailureKind.TRANSIENT,
            "ORA-00257",
        ),
        (
            ora_error("ORA-28000: The account is locked.", code=28000),
            FailureKind.PERMANENT,
            "ORA-28000",
        ),
        (ConnectionResetError("reset by peer"), FailureKind.DEAD, "ConnectionResetError"),
        (ValueError("bug"), FailureKind.PERMANENT, "ValueError"),
    ],
)
def test_classification(exc: BaseException, kind: FailureKind, code: str) -> None:
    """Each error lands in the class the research note gives it."""
    failure = classify(exc)
    assert (failure.kind, failure.code) == (kind, code)


def test_hints_say_what_to_fix() -> None:
    """Known misconfigurations carry a hint naming the setting or the command."""
    missing = classify(ora_error("ORA-00942: table or view does not exist", code=942))
    hint = missing.hint(table="APP.JOBS", dsn="", user="WORKER")
    assert hint is not None
    assert hint.startswith(
        "table APP.JOBS does not exist, or ORACLE_USER WORKER has no grant on it: run "
        "`python -m usvc_oracle apply` to create it, or have its owner grant SELECT, INSERT, "
        "UPDATE, DELETE on it to WORKER"
    )
    alias = classify(ora_errors._create_exception(ora_errors.ERR_NO_CONFIG_DIR))
    assert "ORACLE_DSN='XEPDB1'" in (alias.hint(table="T", dsn="XEPDB1") or "")
    assert classify(ora_error("ORA-00060: deadlock detected", code=60)).hint() is None


def test_a_privilege_error_from_ddl_names_the_ddl_grants() -> None:
    """ORA-01031 from `apply` says what creating the table needs (CREATE TABLE, CREATE
    SEQUENCE for the identity column, a tablespace quota), not the workers' DML grants;
    from a worker it still names the DML grants."""
    refused = classify(ora_error("ORA-01031: insufficient privileges", code=1031))
    ddl = refused.hint(ddl=True, table="JOBS", user="APP") or ""
    assert "CREATE TABLE" in ddl
    assert "CREATE SEQUENCE" in ddl
    assert "QUOTA" in ddl
    assert "SELECT, INSERT" not in ddl
    dml = refused.hint(table="JOBS", user="APP") or ""
    assert "SELECT, INSERT, UPDATE and DELETE on JOBS and JOBS_LIMITS to APP" in dml
    quota = classify(ora_error("ORA-01950: no privileges on tablespace 'USERS'", code=1950))
    assert "QUOTA" in (quota.hint(ddl=True, user="APP") or "")


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("ORA-00001: unique constraint (USVC.MICRO_SVC_IDEM_UX) violated", "MICRO_SVC_IDEM_UX"),
        (
            'ORA-00001: unique constraint ("APP"."T_PK") violated on table APP.T columns (ID)',
            "T_PK",
        ),
        ("ORA-00001: unique constraint (T_UNIQ_UX) violated", "T_UNIQ_UX"),
        ("ORA-00060: deadlock detected", None),
    ],
)
def test_constraint_name(message: str, name: str | None) -> None:
    """The constraint an ORA-00001 names, however Oracle qualifies or quotes it."""
    assert constraint_name(ora_error(message, code=1)) == name
