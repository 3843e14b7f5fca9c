"""Every SQL text the Oracle queue sends, rendered once per table name.

Rules (the tests check each statement offline with sqlglot):

- Values are always bind variables. The only literals are status names, ``'SECOND'`` and
  the numbers 0 and 1; the only identifier from outside is the validated table name.
- Times come from the database clock only: ``SYS_EXTRACT_UTC(SYSTIMESTAMP)`` (UTC, plain
  ``TIMESTAMP``), plus or minus a bound number of seconds. Workers send durations, never times.
- The WHERE clauses repeat the function-based index expressions character for character,
  so Oracle can use those indexes (an index on ``CASE WHEN STATUS = 'Ready' THEN ... END``
  only holds the rows the queue looks for).
- No ``FETCH FIRST``/``ROWNUM`` next to ``FOR UPDATE``: the claim locks with a
  ``FOR UPDATE SKIP LOCKED`` cursor and the caller fetches as many rows as it wants.
- IN lists have a fixed width (padded with NULLs) so each text stays one cached cursor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from usvc_core.jobs import JobStatus

from usvc_oracle.naming import TableName

__all__ = [
    "CLAIM_COLUMNS",
    "CLAIM_STARTED_COLUMNS",
    "DDL_IGNORED_ERRORS",
    "IN_LIST_SIZE",
    "JOB_COLUMNS",
    "Statements",
    "ddl_statements",
    "in_list_binds",
]

#: Width of the padded ``ID IN (...)`` lists (Oracle allows at most 1000 items).
IN_LIST_SIZE = 50

_READY = f"'{JobStatus.READY.value}'"
_ASSIGNED = f"'{JobStatus.ASSIGNED.value}'"
_PROCESSING = f"'{JobStatus.PROCESSING.value}'"
_COMPLETED = f"'{JobStatus.COMPLETED.value}'"
_FAILED = f"'{JobStatus.FAILED.value}'"
_ALL_STATUSES = ", ".join((_READY, _ASSIGNED, _PROCESSING, _COMPLETED, _FAILED))
_LEASED = f"STATUS IN ({_ASSIGNED}, {_PROCESSING})"
_DONE = f"STATUS IN ({_COMPLETED}, {_FAILED})"
_UNFINISHED = f"STATUS IN ({_READY}, {_ASSIGNED}, {_PROCESSING})"

NOW = "SYS_EXTRACT_UTC(SYSTIMESTAMP)"


def _plus(bind: str) -> str:
    return f"{NOW} + NUMTODSINTERVAL(:{bind}, 'SECOND')"


def _when(condition: str, column: str) -> str:
    return f"CASE WHEN {condition} THEN {column} END"


# --- index expressions (the WHERE clauses below repeat them exactly) -------------------------
READY_MS = _when(f"STATUS = {_READY}", "MICROSERVICE")
READY_PRIORITY = _when(f"STATUS = {_READY}", "PRIORITY")
READY_RUN_AT = _when(f"STATUS = {_READY}", "RUN_AT")
READY_ID = _when(f"STATUS = {_READY}", "ID")
LEASED_MS = _when(_LEASED, "MICROSERVICE")
LEASED_EXPIRES = _when(_LEASED, "LEASE_EXPIRES_AT")
LEASED_STATUS = _when(_LEASED, "STATUS")
DONE_MS = _when(_DONE, "MICROSERVICE")
DONE_FINISHED = _when(_DONE, "FINISHED_AT")
DONE_STATUS = _when(_DONE, "STATUS")
IDEM_MS = _when(f"{_UNFINISHED} AND IDEMPOTENCY_KEY IS NOT NULL", "MICROSERVICE")
IDEM_KEY = _when(_UNFINISHED, "IDEMPOTENCY_KEY")

#: suffix -> (unique, expressions, descending positions)
INDEXES: dict[str, tuple[bool, tuple[str, ...], frozenset[int]]] = {
    "READY_IX": (False, (READY_MS, READY_PRIORITY, READY_RUN_AT, READY_ID), frozenset({1})),
    "LEASE_IX": (False, (LEASED_MS, LEASED_EXPIRES, LEASED_STATUS), frozenset()),
    "DONE_IX": (False, (DONE_MS, DONE_FINISHED, DONE_STATUS), frozenset()),
    "IDEM_UX": (True, (IDEM_MS, IDEM_KEY), frozenset()),
}

#: The columns of a job row, in the order ``get`` selects them.
JOB_COLUMNS = (
    "ID",
    "MICROSERVICE",
    "ACTION",
    "STATUS",
    "PRIORITY",
    "PAYLOAD",
    "TOKEN",
    "IDEMPOTENCY_KEY",
    "ATTEMPTS",
    "MAX_ATTEMPTS",
    "RUN_AT",
    "CREATED_AT",
    "UPDATED_AT",
    "ASSIGNED_AT",
    "STARTED_AT",
    "FINISHED_AT",
    "LEASE_EXPIRES_AT",
    "LEASE_OWNER",
    "LEASE_TOKEN",
    "RESULTS",
    "ERROR_CODE",
    "ERROR_MESSAGE",
    "RUNTIME_MS",
)

#: What a claim returns per row (one CLOB only: the payload, returned as LONG text).
CLAIM_COLUMNS = (
    "ID",
    "MICROSERVICE",
    "ACTION",
    "PRIORITY",
    "PAYLOAD",
    "TOKEN",
    "IDEMPOTENCY_KEY",
    "ATTEMPTS",
    "MAX_ATTEMPTS",
    "RUN_AT",
    "CREATED_AT",
    "UPDATED_AT",
    "ASSIGNED_AT",
    "LEASE_EXPIRES_AT",
    "LEASE_TOKEN",
)

#: What ``claim_and_start`` returns per row: the claim's columns and the start time.
CLAIM_STARTED_COLUMNS = (*CLAIM_COLUMNS, "STARTED_AT")

#: What ``mark_processing`` returns.
PROCESSING_COLUMNS = ("ATTEMPTS", "STARTED_AT", "LEASE_EXPIRES_AT", "UPDATED_AT")


def in_list_binds(prefix: str = "id") -> list[str]:
    """The bind names of one padded IN list: id0 ... id49."""
    return [f"{prefix}{i}" for i in range(IN_LIST_SIZE)]


def _in_list() -> str:
    return "ID IN (" + ", ".join(f":{b}" for b in in_list_binds()) + ")"


def _returning(columns: tuple[str, ...]) -> str:
    outs = ", ".join(f":o_{c.lower()}" for c in columns)
    return f"RETURNING {', '.join(columns)} INTO {outs}"


@dataclass(frozen=True, slots=True)
class Statements:
    """The runtime SQL for one table. Build with :meth:`render`."""

    enqueue: str
    set_default_token: str
    idempotency_holder: str
    claim_lock: str
    claim_update: str
    claim_start_update: str
    mark_processing: str
    extend_lease: str
    complete: str
    fail: str
    retry: str
    release: str
    job_state: str
    reclaim_lock: str
    reclaim_assigned: str
    reclaim_processing: str
    get: str
    stats: str
    purge: str
    probe: str

    @classmethod
    def render(cls, table: TableName) -> Statements:
        t = table.quoted
        ready_ix = table.object_name("READY_IX")
        owned = "WHERE ID = :id\n   AND LEASE_TOKEN = :lease_token"
        return cls(
            enqueue=(
                f"INSERT INTO {t} (MICROSERVICE, ACTION, STATUS, PRIORITY, PAYLOAD, TOKEN,\n"
                "    IDEMPOTENCY_KEY, ATTEMPTS, MAX_ATTEMPTS, RUN_AT, CREATED_AT, UPDATED_AT)\n"
                f"VALUES (:microservice, :action, {_READY}, :priority, :payload, :token,\n"
                "    :idempotency_key, 0, :max_attempts,\n"
                f"    {_plus('delay_seconds')}, {NOW}, {NOW})\n"
                + _returning(("ID", "RUN_AT", "CREATED_AT", "UPDATED_AT"))
            ),
            set_default_token=(
                f"UPDATE {t}\n   SET TOKEN = TO_CHAR(ID)\n WHERE ID = :id\n   AND TOKEN IS NULL"
            ),
            idempotency_holder=(
                f"SELECT ID\n  FROM {t}\n WHERE {IDEM_MS} = :microservice\n"
                f"   AND {IDEM_KEY} = :idempotency_key"
            ),
            claim_lock=(
                f"SELECT /*+ INDEX(q {ready_ix}) */ ID\n  FROM {t} q\n"
                f" WHERE {READY_MS} = :microservice\n"
                f"   AND {READY_RUN_AT} <= {NOW}\n"
                f" ORDER BY {READY_PRIORITY} DESC,\n"
                f"          {READY_RUN_AT},\n"
                f"          {READY_ID}\n"
                "   FOR UPDATE SKIP LOCKED"
            ),
            claim_update=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_ASSIGNED},\n"
                "       LEASE_OWNER = :worker_id,\n"
                "       LEASE_TOKEN = :lease_token || TO_CHAR(ID),\n"
                f"       ASSIGNED_AT = {NOW},\n"
                "       STARTED_AT = NULL,\n"
                f"       LEASE_EXPIRES_AT = {_plus('lease_seconds')},\n"
                f"       UPDATED_AT = {NOW}\n"
                f" WHERE {_in_list()}\n"
                f"   AND STATUS = {_READY}\n" + _returning(CLAIM_COLUMNS)
            ),
            # claim_update and mark_processing at once: Processing, attempt counted.
            claim_start_update=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_PROCESSING},\n"
                "       ATTEMPTS = ATTEMPTS + 1,\n"
                "       LEASE_OWNER = :worker_id,\n"
                "       LEASE_TOKEN = :lease_token || TO_CHAR(ID),\n"
                f"       ASSIGNED_AT = {NOW},\n"
                f"       STARTED_AT = {NOW},\n"
                f"       LEASE_EXPIRES_AT = {_plus('lease_seconds')},\n"
                f"       UPDATED_AT = {NOW}\n"
                f" WHERE {_in_list()}\n"
                f"   AND STATUS = {_READY}\n" + _returning(CLAIM_STARTED_COLUMNS)
            ),
            mark_processing=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_PROCESSING},\n"
                "       ATTEMPTS = ATTEMPTS + 1,\n"
                f"       STARTED_AT = {NOW},\n"
                f"       LEASE_EXPIRES_AT = {_plus('lease_seconds')},\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND STATUS = {_ASSIGNED}\n" + _returning(PROCESSING_COLUMNS)
            ),
            extend_lease=(
                f"UPDATE {t}\n"
                f"   SET LEASE_EXPIRES_AT = {_plus('lease_seconds')},\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND {_LEASED}"
            ),
            complete=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_COMPLETED},\n"
                "       RESULTS = :results,\n"
                "       ERROR_CODE = NULL,\n"
                "       ERROR_MESSAGE = NULL,\n"
                "       RUNTIME_MS = :runtime_ms,\n"
                f"       FINISHED_AT = {NOW},\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND STATUS = {_PROCESSING}"
            ),
            fail=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_FAILED},\n"
                "       ERROR_CODE = :error_code,\n"
                "       ERROR_MESSAGE = :error_message,\n"
                "       RUNTIME_MS = :runtime_ms,\n"
                f"       FINISHED_AT = {NOW},\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND STATUS = {_PROCESSING}"
            ),
            # Right-hand sides see the row as it was, so every CASE tests the old ATTEMPTS.
            retry=(
                f"UPDATE {t}\n"
                "   SET STATUS = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                f" THEN {_READY} ELSE {_FAILED} END,\n"
                "       RUN_AT = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                f" THEN {_plus('delay_seconds')} ELSE RUN_AT END,\n"
                "       FINISHED_AT = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                f" THEN NULL ELSE {NOW} END,\n"
                "       LEASE_OWNER = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                " THEN NULL ELSE LEASE_OWNER END,\n"
                "       LEASE_TOKEN = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                " THEN NULL ELSE LEASE_TOKEN END,\n"
                "       ERROR_CODE = :error_code,\n"
                "       ERROR_MESSAGE = :error_message,\n"
                "       RUNTIME_MS = :runtime_ms,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND STATUS = {_PROCESSING}\n"
                "RETURNING STATUS INTO :o_status"
            ),
            # RUN_AT is kept: a released job keeps its place in line.
            release=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_READY},\n"
                f"       ATTEMPTS = CASE WHEN STATUS = {_PROCESSING} AND ATTEMPTS > 0"
                " THEN ATTEMPTS - 1 ELSE ATTEMPTS END,\n"
                "       LEASE_OWNER = NULL,\n"
                "       LEASE_TOKEN = NULL,\n"
                "       ASSIGNED_AT = NULL,\n"
                "       STARTED_AT = NULL,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND {_LEASED}"
            ),
            job_state=f"SELECT STATUS, LEASE_TOKEN\n  FROM {t}\n WHERE ID = :id",
            reclaim_lock=(
                f"SELECT ID\n  FROM {t}\n"
                f" WHERE {LEASED_MS} = :microservice\n"
                f"   AND {LEASED_EXPIRES} < {NOW}\n"
                "   FOR UPDATE SKIP LOCKED"
            ),
            reclaim_assigned=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_READY},\n"
                "       LEASE_OWNER = NULL,\n"
                "       LEASE_TOKEN = NULL,\n"
                "       ASSIGNED_AT = NULL,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" WHERE {_in_list()}\n"
                f"   AND STATUS = {_ASSIGNED}\n"
                f"   AND LEASE_EXPIRES_AT < {NOW}\n"
                "RETURNING ID INTO :o_id"
            ),
            reclaim_processing=(
                f"UPDATE {t}\n"
                "   SET STATUS = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                f" THEN {_READY} ELSE {_FAILED} END,\n"
                "       FINISHED_AT = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                f" THEN NULL ELSE {NOW} END,\n"
                "       LEASE_OWNER = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                " THEN NULL ELSE LEASE_OWNER END,\n"
                "       LEASE_TOKEN = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                " THEN NULL ELSE LEASE_TOKEN END,\n"
                "       ERROR_CODE = :error_code,\n"
                "       ERROR_MESSAGE = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                " THEN :requeued_message ELSE :failed_message END,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" WHERE {_in_list()}\n"
                f"   AND STATUS = {_PROCESSING}\n"
                f"   AND LEASE_EXPIRES_AT < {NOW}\n"
                "RETURNING ID, STATUS INTO :o_id, :o_status"
            ),
            get=f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n WHERE ID = :id",
            # One index-driven branch per status group, so no full scan of a large table.
            stats=(
                f"SELECT {_READY} AS JOB_STATUS, COUNT(*) AS JOB_COUNT,\n"
                f"       MIN(CREATED_AT) AS OLDEST_CREATED_AT, MAX({NOW}) AS DB_NOW\n"
                f"  FROM {t}\n WHERE {READY_MS} = :microservice\n"
                "UNION ALL\n"
                f"SELECT {LEASED_STATUS}, COUNT(*),\n"
                "       CAST(NULL AS TIMESTAMP(6)), CAST(NULL AS TIMESTAMP(6))\n"
                f"  FROM {t}\n WHERE {LEASED_MS} = :microservice\n"
                f" GROUP BY {LEASED_STATUS}\n"
                "UNION ALL\n"
                f"SELECT {DONE_STATUS}, COUNT(*),\n"
                "       CAST(NULL AS TIMESTAMP(6)), CAST(NULL AS TIMESTAMP(6))\n"
                f"  FROM {t}\n WHERE {DONE_MS} = :microservice\n"
                f" GROUP BY {DONE_STATUS}"
            ),
            purge=(
                f"DELETE FROM {t}\n"
                f" WHERE {DONE_MS} = :microservice\n"
                f"   AND {DONE_FINISHED} < {NOW} - NUMTODSINTERVAL(:older_than_seconds, 'SECOND')\n"
                "   AND ROWNUM <= :batch_size"
            ),
            # Checks at startup that the table exists with every column (no row is read).
            probe=f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n WHERE ID IS NULL",
        )

    def as_dict(self) -> dict[str, str]:
        """Statement name -> SQL text."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: ORA codes ``apply`` treats as "already there": name in use, column list already indexed,
#: constraint already exists.
DDL_IGNORED_ERRORS = frozenset({955, 1408, 2260, 2261, 2275})


def ddl_statements(table: TableName) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``table`` (19c and later)."""
    t = table.quoted
    create = (
        f"CREATE TABLE {t} (\n"
        "    ID               NUMBER(19) GENERATED BY DEFAULT ON NULL AS IDENTITY,\n"
        "    MICROSERVICE     VARCHAR2(128 CHAR) NOT NULL,\n"
        "    ACTION           VARCHAR2(256 CHAR),\n"
        f"    STATUS           VARCHAR2(16 CHAR) DEFAULT {_READY} NOT NULL,\n"
        "    PRIORITY         NUMBER(10) DEFAULT 0 NOT NULL,\n"
        "    PAYLOAD          CLOB,\n"
        "    TOKEN            VARCHAR2(256 CHAR),\n"
        "    IDEMPOTENCY_KEY  VARCHAR2(256 CHAR),\n"
        "    ATTEMPTS         NUMBER(5) DEFAULT 0 NOT NULL,\n"
        "    MAX_ATTEMPTS     NUMBER(5) DEFAULT 3 NOT NULL,\n"
        f"    RUN_AT           TIMESTAMP(6) DEFAULT {NOW} NOT NULL,\n"
        f"    CREATED_AT       TIMESTAMP(6) DEFAULT {NOW} NOT NULL,\n"
        f"    UPDATED_AT       TIMESTAMP(6) DEFAULT {NOW} NOT NULL,\n"
        "    ASSIGNED_AT      TIMESTAMP(6),\n"
        "    STARTED_AT       TIMESTAMP(6),\n"
        "    FINISHED_AT      TIMESTAMP(6),\n"
        "    LEASE_EXPIRES_AT TIMESTAMP(6),\n"
        "    LEASE_OWNER      VARCHAR2(200 CHAR),\n"
        "    LEASE_TOKEN      VARCHAR2(64 CHAR),\n"
        "    RESULTS          CLOB,\n"
        "    ERROR_CODE       VARCHAR2(64 CHAR),\n"
        "    ERROR_MESSAGE    CLOB,\n"
        "    RUNTIME_MS       NUMBER,\n"
        f"    CONSTRAINT {table.object_name('PK')} PRIMARY KEY (ID),\n"
        f"    CONSTRAINT {table.object_name('STATUS_CK')} CHECK (STATUS IN ({_ALL_STATUSES})),\n"
        f"    CONSTRAINT {table.object_name('ATTEMPTS_CK')}"
        " CHECK (ATTEMPTS >= 0 AND MAX_ATTEMPTS >= 1)\n"
        ")"
    )
    statements = [create]
    for suffix, (unique, exprs, desc) in INDEXES.items():
        cols = ",\n".join(f"    {e} DESC" if i in desc else f"    {e}" for i, e in enumerate(exprs))
        kind = "UNIQUE INDEX" if unique else "INDEX"
        statements.append(f"CREATE {kind} {table.qualified_object(suffix)} ON {t} (\n{cols}\n)")
    return statements
