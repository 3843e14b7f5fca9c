"""Sorting driver errors into drop-and-retry, retry, and give-up-with-a-hint."""

from __future__ import annotations

import pytest
from oracledb import errors as ora_errors
from usvc_oracle.failures import FailureKind, classify
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
    assert missing.hint(table="APP.JOBS", dsn="") == (
        "table APP.JOBS does not exist: run `python -m usvc_oracle apply` to create it"
    )
    alias = classify(ora_errors._create_exception(ora_errors.ERR_NO_CONFIG_DIR))
    assert "ORACLE_DSN='XEPDB1'" in (alias.hint(table="T", dsn="XEPDB1") or "")
    assert classify(ora_error("ORA-00060: deadlock detected", code=60)).hint() is None
