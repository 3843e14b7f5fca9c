"""What to do about a driver error: drop the session, retry, or give up with a hint.

python-oracledb (thin mode) reports every failure as ``oracledb.Error`` whose first argument
carries ``full_code`` (``"DPY-4011"``, ``"ORA-00060"``), ``code`` (the ORA number, 0 for
driver-only errors) and ``isrecoverable``. ORA codes meaning "the session is gone" (03113,
03114, 03135, ...) are rewritten by the driver to DPY-4011.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

import oracledb

__all__ = ["Failure", "FailureKind", "classify", "constraint_name"]


class FailureKind(Enum):
    DEAD = "dead"  #: the session is gone or in an unknown state: drop it, retry elsewhere
    TRANSIENT = "transient"  #: the statement failed but may work soon: roll back, retry
    PERMANENT = "permanent"  #: retrying cannot help: roll back, report


#: Driver codes after which the connection cannot be trusted.
_DEAD_CODES = frozenset(
    {
        "DPY-1001",  # not connected
        "DPY-4011",  # the database or network closed the connection
        "DPY-4024",  # call timeout: the round trip was abandoned mid-way
        "DPY-4033",  # idle time exceeded
        "DPY-4035",  # invalid server response
    }
)
_TRANSIENT_DPY = frozenset(
    {
        "DPY-4005",  # no pooled connection became free in time
        "DPY-6000",  # listener refused the connection
        "DPY-6001",  # service not (yet) registered with the listener
        "DPY-6003",  # SID not (yet) registered with the listener
        "DPY-6004",  # proxy failure
        "DPY-6005",  # cannot connect (refused, unreachable, reset)
    }
)
_TRANSIENT_ORA = frozenset(
    {
        60,  # deadlock detected; the statement was rolled back
        54,  # resource busy (NOWAIT)
        30006,  # resource busy (WAIT timeout)
        4021,  # timeout waiting for a library cache lock
        1555,  # snapshot too old
        1033,  # initialization or shutdown in progress
        1034,  # database not available
        1089,  # immediate shutdown in progress
        1090,  # shutdown in progress
        12514,  # listener does not know the service yet
        12516,  # listener could not find an available handler
        12519,  # no appropriate service handler found
        12520,  # listener found no handler for the server type
        12521,  # listener does not know the instance yet
        12528,  # all instances are blocking new connections
        12757,  # instance does not currently know of the service
        25408,  # cannot safely replay the call
        18,  # maximum number of sessions exceeded
        20,  # maximum number of processes exceeded
        257,  # archiver stuck: only SYSDBA may connect until it is resolved
        1109,  # database not open (a PDB still opening)
        4031,  # shared memory exhausted
        12505,  # listener does not know the SID yet
        12170,  # connect timeout
        12535,  # operation timed out
        12541,  # no listener (yet)
        12543,  # destination host unreachable
        12560,  # protocol adapter error (network)
    }
)

#: What to fix, for the permanent errors a misconfiguration causes.
_HINTS: dict[str, str] = {
    "ORA-01017": "invalid username or password: check ORACLE_USER and ORACLE_PASSWORD",
    "ORA-28000": "the account ORACLE_USER is locked: ask the DBA to unlock it",
    "ORA-28001": "the password of ORACLE_USER has expired: ask the DBA to reset it",
    "ORA-01045": "ORACLE_USER lacks the CREATE SESSION privilege: ask the DBA to grant it",
    "ORA-01031": (
        "ORACLE_USER {user} lacks a privilege on the queue tables: grant SELECT, INSERT, "
        "UPDATE and DELETE on {table} and {table}_LIMITS to {user}"
    ),
    "ORA-00942": (
        "table {table} does not exist, or ORACLE_USER {user} has no grant on it: run "
        "`python -m usvc_oracle apply` to create it, or have its owner grant SELECT, INSERT, "
        "UPDATE, DELETE on it to {user}"
    ),
    "ORA-00904": (
        "table {table} lacks a column this version needs: `python -m usvc_oracle check` "
        "names them; `python -m usvc_oracle apply` adds them to an older usvc table"
    ),
    "DPY-4000": "ORACLE_DSN={dsn!r} is not an alias in tnsnames.ora: "
    "use host:port/service_name, or add the alias",
    "DPY-4026": "ORACLE_DSN={dsn!r} is a TNS alias but tnsnames.ora was not found: "
    "use host:port/service_name, or set TNS_ADMIN to the directory holding tnsnames.ora",
    "DPY-4027": "ORACLE_DSN={dsn!r} is a TNS alias but no tnsnames.ora directory is "
    "configured: use host:port/service_name, or set TNS_ADMIN",
    "DPY-4017": "ORACLE_DSN={dsn!r} is not a valid connect descriptor",
    "DPY-4018": "ORACLE_DSN={dsn!r} cannot be parsed: use host:port/service_name",
    "DPY-4001": "no credentials: set ORACLE_USER and ORACLE_PASSWORD",
}

#: What to fix when ``apply`` (DDL) fails: other privileges than the workers' DML.
_DDL_HINTS: dict[str, str] = {
    "ORA-01031": (
        "ORACLE_USER {user} may not create the queue table: `apply` needs CREATE TABLE and "
        "CREATE SEQUENCE (the ID identity column creates a sequence), plus a quota on the "
        "tablespace; run it as the schema owner, or have the DBA grant them "
        "(GRANT CREATE TABLE, CREATE SEQUENCE TO {user}; ALTER USER {user} QUOTA 1G ON USERS)"
    ),
    "ORA-01950": (
        "ORACLE_USER {user} has no quota on its tablespace: have the DBA run "
        "ALTER USER {user} QUOTA 1G ON <tablespace> (or QUOTA UNLIMITED)"
    ),
    "ORA-01536": (
        "the tablespace quota of ORACLE_USER {user} is used up: have the DBA raise it "
        "(ALTER USER {user} QUOTA ... ON <tablespace>)"
    ),
    "ORA-00942": (
        "{table} does not exist or ORACLE_USER {user} cannot alter it: run `apply` as the "
        "table's owner"
    ),
}


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified driver error."""

    kind: FailureKind
    code: str  #: "DPY-4011", "ORA-00942", or the exception type's name
    message: str  #: the driver's first line, without the code

    def hint(self, *, ddl: bool = False, **names: Any) -> str | None:
        """What to fix, when the code is a known misconfiguration; ``ddl``: the error came
        from creating or altering the table (``apply``), which needs other privileges."""
        template = (_DDL_HINTS.get(self.code) if ddl else None) or _HINTS.get(self.code)
        if template is None:
            return None
        return template.format_map(_Names({"user": "ORACLE_USER", **names}))


class _Names(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_CONSTRAINT = re.compile(r"unique constraint \(([^)]*)\)", re.IGNORECASE)


def constraint_name(exc: BaseException) -> str | None:
    """The unqualified name of the unique constraint an ORA-00001 names, upper-cased
    (``"APP"."T_PK"`` and ``APP.T_PK`` both give ``T_PK``)."""
    match = _CONSTRAINT.search(str(exc))
    if match is None:
        return None
    return match.group(1).split(".")[-1].strip().strip('"').upper()


def classify(exc: BaseException) -> Failure:
    """Sort an exception raised during a database call."""
    if not isinstance(exc, oracledb.Error):
        # Socket errors or a cancelled call leave the protocol state unknown.
        kind = FailureKind.DEAD if isinstance(exc, OSError | EOFError) else FailureKind.PERMANENT
        return Failure(kind, type(exc).__name__, str(exc))
    err = exc.args[0] if exc.args else None
    full_code = str(getattr(err, "full_code", "") or "")
    ora = int(getattr(err, "code", 0) or 0)
    code = full_code or (f"ORA-{ora:05d}" if ora else type(exc).__name__)
    lines = str(getattr(err, "message", None) or exc).splitlines() or [""]
    message = lines[0].removeprefix(f"{code}: ")
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, oracledb.Error):
        # DPY-6005 "cannot connect" says why only in the exception it wraps (refused,
        # timed out, name not resolved...): name it, or the operator sees no cause.
        message = f"{message} [{type(cause).__name__}: {cause}]"
    if full_code in _DEAD_CODES or getattr(err, "is_session_dead", False):
        kind = FailureKind.DEAD
    elif (
        full_code in _TRANSIENT_DPY
        or ora in _TRANSIENT_ORA
        or bool(getattr(err, "isrecoverable", False))
    ):
        kind = FailureKind.TRANSIENT
    else:
        kind = FailureKind.PERMANENT
    return Failure(kind, code, message)
