"""Every SQL text the Oracle queue sends, rendered once per table name.

Rules (the tests check each statement offline with sqlglot):

- Values are always bind variables. The only literals are status names, ``'SECOND'``,
  ``'MI'`` (minute truncation), the numbers 0 and 1, and the row-lock wait
  :data:`ROW_LOCK_WAIT_SECONDS` (``WAIT`` takes no bind); the only identifier from outside
  is the validated table name.
- Times come from the database clock only: ``SYS_EXTRACT_UTC(SYSTIMESTAMP)`` (UTC, plain
  ``TIMESTAMP``), plus or minus a bound number of seconds. Workers send durations, never
  times (the admin filters bind the operator's time range, which is data).
- The WHERE clauses repeat the function-based index expressions character for character,
  so Oracle can use those indexes (an index on ``CASE WHEN STATUS = 'Ready' THEN ... END``
  only holds the rows the queue looks for). Index keys are ascending expressions: a
  ``DESC`` key is stored as ``SYS_OP_DESCEND(expr)``, which is never NULL, so it would
  index every row of the table instead of only the Ready ones.
- No ``FETCH FIRST``/``ROWNUM`` next to ``FOR UPDATE``: the claim locks with a
  ``FOR UPDATE SKIP LOCKED`` cursor and the caller fetches as many rows as it wants.
- No statement waits unboundedly for a row lock another session holds (an operator's
  uncommitted UPDATE): claims, lease renewals, releases and purges skip locked rows; the
  transitions of one owned job lock it first with ``FOR UPDATE WAIT`` and report a timeout.
- IN lists have a fixed width (padded with NULLs) so each text stays one cached cursor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from usvc_core.jobs import JobStatus

from usvc_oracle.naming import TableName

__all__ = [
    "BASE_COLUMNS",
    "CLAIM_COLUMNS",
    "CLAIM_STARTED_COLUMNS",
    "COLUMNS_QUERY",
    "DDL_IGNORED_ERRORS",
    "DESCENDING_INDEXES_QUERY",
    "IN_LIST_SIZE",
    "JOB_COLUMNS",
    "ROW_LOCK_WAIT_SECONDS",
    "STATUS_LIST_SIZE",
    "UPGRADE_COLUMNS",
    "Statements",
    "ddl_statements",
    "in_list_binds",
    "upgrade_statements",
]

#: Width of the padded ``IN (...)`` lists (Oracle allows at most 1000 items).
IN_LIST_SIZE = 50
#: Width of the status list of the admin filters (there are five statuses).
STATUS_LIST_SIZE = 5
#: How long a transition of one owned job waits for a row lock another session holds.
ROW_LOCK_WAIT_SECONDS = 5

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
READY_PRIORITY = _when(f"STATUS = {_READY}", "-PRIORITY")  # ascending: highest first
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
UNIQ_MS = _when("UNIQUE_KEY IS NOT NULL", "MICROSERVICE")

#: suffix -> (unique, key expressions); every key ascending (see the module docstring).
INDEXES: dict[str, tuple[bool, tuple[str, ...]]] = {
    "READY_IX": (False, (READY_MS, READY_PRIORITY, READY_RUN_AT, READY_ID)),
    "LEASE_IX": (False, (LEASED_MS, LEASED_EXPIRES, LEASED_STATUS)),
    "DONE_IX": (False, (DONE_MS, DONE_FINISHED, DONE_STATUS)),
    "IDEM_UX": (True, (IDEM_MS, IDEM_KEY)),
    # Rows without a unique key have an all-NULL key and stay out of the index.
    "UNIQ_UX": (True, (UNIQ_MS, "UNIQUE_KEY")),
    # The operators' listing, newest first; its columns never change after the insert,
    # so transitions do not maintain it.
    "LIST_IX": (False, ("MICROSERVICE", "CREATED_AT", "ID")),
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
    "UNIQUE_KEY",
    "CANCEL_REQUESTED",
)

#: Columns added after the first layout: ``apply`` adds them to an older table.
UPGRADE_COLUMNS: dict[str, str] = {
    "UNIQUE_KEY": "VARCHAR2(256 CHAR)",
    "CANCEL_REQUESTED": "NUMBER(1) DEFAULT 0 NOT NULL",
}
#: Columns every usvc queue table has had: a table lacking one has another layout.
BASE_COLUMNS = tuple(c for c in JOB_COLUMNS if c not in UPGRADE_COLUMNS)

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
    "UNIQUE_KEY",
)

#: What ``claim_and_start`` returns per row: the claim's columns and the start time.
CLAIM_STARTED_COLUMNS = (*CLAIM_COLUMNS, "STARTED_AT")

#: What ``mark_processing`` returns.
PROCESSING_COLUMNS = ("ATTEMPTS", "STARTED_AT", "LEASE_EXPIRES_AT", "UPDATED_AT")

#: The columns of a table as the connected user sees them (``check`` and ``apply``).
COLUMNS_QUERY = (
    "SELECT COLUMN_NAME\n  FROM ALL_TAB_COLUMNS\n"
    " WHERE OWNER = NVL(:owner, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'))\n"
    "   AND TABLE_NAME = :table_name"
)

#: The table's indexes with a DESC key (a Ready index from before the keys were ascending).
DESCENDING_INDEXES_QUERY = (
    "SELECT DISTINCT INDEX_NAME\n  FROM ALL_IND_COLUMNS\n"
    " WHERE TABLE_OWNER = NVL(:owner, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'))\n"
    "   AND TABLE_NAME = :table_name\n"
    "   AND DESCEND = 'DESC'"
)


def in_list_binds(prefix: str = "id", size: int = IN_LIST_SIZE) -> list[str]:
    """The bind names of one padded IN list: id0 ... id49."""
    return [f"{prefix}{i}" for i in range(size)]


def _in_list(column: str = "ID", prefix: str = "id", size: int = IN_LIST_SIZE) -> str:
    return f"{column} IN (" + ", ".join(f":{b}" for b in in_list_binds(prefix, size)) + ")"


def _returning(columns: tuple[str, ...]) -> str:
    outs = ", ".join(f":o_{c.lower()}" for c in columns)
    return f"RETURNING {', '.join(columns)} INTO {outs}"


#: The operators' filters (``JobFilter``); a flag bind of 1 means "this set is empty:
#: match everything", since a padded IN list cannot say that.
_ADMIN_FILTER = (
    f"   AND (:any_action = 1 OR {_in_list('ACTION', 'action')})\n"
    f"   AND (:any_error = 1 OR {_in_list('ERROR_CODE', 'error')})\n"
    "   AND (:created_after IS NULL OR CREATED_AT >= :created_after)\n"
    "   AND (:created_before IS NULL OR CREATED_AT < :created_before)"
)


@dataclass(frozen=True, slots=True)
class Statements:
    """The runtime SQL for one table. Build with :meth:`render`."""

    enqueue: str
    set_default_token: str
    idempotency_holder: str
    unique_holder: str
    claim_lock: str
    claim_lock_except: str
    claim_update: str
    claim_start_update: str
    fail_exhausted: str
    limit_lock: str
    limit_insert: str
    running_counts: str
    mark_processing: str
    lock_job: str
    lock_ids: str
    existing_ids: str
    extend_lease: str
    complete: str
    fail: str
    retry: str
    release: str
    reclaim_lock: str
    reclaim_assigned: str
    reclaim_processing: str
    get: str
    stats: str
    purge_lock: str
    purge: str
    probe: str
    limits_probe: str
    list_jobs: str
    filter_failed: str
    retry_failed: str
    cancel_waiting: str
    cancel_running: str
    activity_counts: str
    activity_minutes: str
    db_now: str

    @classmethod
    def render(cls, table: TableName) -> Statements:
        t = table.quoted
        limits = table.qualified_object("LIMITS")
        ready_ix = table.object_name("READY_IX")
        owned = "WHERE ID = :id\n   AND LEASE_TOKEN = :lease_token"
        claim_lock = (
            f"SELECT /*+ INDEX(q {ready_ix}) */ ID, ACTION, ATTEMPTS, MAX_ATTEMPTS\n"
            f"  FROM {t} q\n"
            f" WHERE {READY_MS} = :microservice\n"
            f"   AND {READY_RUN_AT} <= {NOW}\n"
            "{extra}"
            f" ORDER BY {READY_PRIORITY},\n"
            f"          {READY_RUN_AT},\n"
            f"          {READY_ID}\n"
            "   FOR UPDATE SKIP LOCKED"
        )
        return cls(
            enqueue=(
                f"INSERT INTO {t} (MICROSERVICE, ACTION, STATUS, PRIORITY, PAYLOAD, TOKEN,\n"
                "    IDEMPOTENCY_KEY, UNIQUE_KEY, ATTEMPTS, MAX_ATTEMPTS, RUN_AT, CREATED_AT,\n"
                "    UPDATED_AT)\n"
                f"VALUES (:microservice, :action, {_READY}, :priority, :payload, :token,\n"
                "    :idempotency_key, :unique_key, 0, :max_attempts,\n"
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
            unique_holder=(
                f"SELECT ID\n  FROM {t}\n WHERE {UNIQ_MS} = :microservice\n"
                "   AND UNIQUE_KEY = :unique_key"
            ),
            claim_lock=claim_lock.replace("{extra}", ""),
            # The claim without the actions that reached their max_running.
            claim_lock_except=claim_lock.replace(
                "{extra}",
                f"   AND (ACTION IS NULL OR NOT {_in_list('ACTION', 'skip')})\n",
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
                f"   AND STATUS = {_READY}\n"
                "   AND ATTEMPTS < MAX_ATTEMPTS\n" + _returning(CLAIM_COLUMNS)
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
                f"   AND STATUS = {_READY}\n"
                "   AND ATTEMPTS < MAX_ATTEMPTS\n" + _returning(CLAIM_STARTED_COLUMNS)
            ),
            # Ready rows whose attempts another producer (or an operator) left spent.
            fail_exhausted=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_FAILED},\n"
                "       ERROR_CODE = :error_code,\n"
                "       ERROR_MESSAGE = :error_message,\n"
                f"       FINISHED_AT = {NOW},\n"
                f"       UPDATED_AT = {NOW}\n"
                f" WHERE {_in_list()}\n"
                f"   AND STATUS = {_READY}\n"
                "   AND ATTEMPTS >= MAX_ATTEMPTS"
            ),
            limit_lock=(
                f"SELECT ACTION\n  FROM {limits}\n WHERE MICROSERVICE = :microservice\n"
                f"   AND {_in_list('ACTION', 'action')}\n"
                "   FOR UPDATE SKIP LOCKED"
            ),
            limit_insert=(
                f"INSERT INTO {limits} (MICROSERVICE, ACTION)\nVALUES (:microservice, :action)"
            ),
            running_counts=(
                f"SELECT ACTION, COUNT(*)\n  FROM {t}\n WHERE {LEASED_MS} = :microservice\n"
                f"   AND {_in_list('ACTION', 'action')}\n GROUP BY ACTION"
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
            # The first step of every transition of one job: lock it (bounded wait) and
            # read what the guarded UPDATE and the "lost or settled?" verdict need.
            lock_job=(
                "SELECT STATUS, LEASE_TOKEN, ERROR_CODE, MICROSERVICE\n"
                f"  FROM {t}\n WHERE ID = :id\n"
                f"   FOR UPDATE WAIT {ROW_LOCK_WAIT_SECONDS}"
            ),
            lock_ids=(
                f"SELECT ID, CANCEL_REQUESTED\n  FROM {t}\n WHERE {_in_list()}\n"
                "   FOR UPDATE SKIP LOCKED"
            ),
            existing_ids=f"SELECT ID\n  FROM {t}\n WHERE {_in_list()}",
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
            # LEASE_TOKEN is kept (the next claim replaces it): a repeated retry() knows its
            # own requeue by it, and no lease statement matches a Ready row.
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
                "       ERROR_CODE = :error_code,\n"
                "       ERROR_MESSAGE = :error_message,\n"
                "       RUNTIME_MS = :runtime_ms,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                "       CANCEL_REQUESTED = 0,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND STATUS = {_PROCESSING}\n"
                "RETURNING STATUS INTO :o_status"
            ),
            # RUN_AT is kept: a released job keeps its place in line. Back in Ready, a job
            # runs again without the cancellation an operator asked of its last attempt.
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
                "       CANCEL_REQUESTED = 0,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" {owned}\n"
                f"   AND {_LEASED}"
            ),
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
                "       CANCEL_REQUESTED = 0,\n"
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
                "       CANCEL_REQUESTED = 0,\n"
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
            # Finished rows another session has locked are left for the next purge.
            purge_lock=(
                f"SELECT ID\n  FROM {t}\n"
                f" WHERE {DONE_MS} = :microservice\n"
                f"   AND {DONE_FINISHED} < {NOW} - NUMTODSINTERVAL(:older_than_seconds, 'SECOND')\n"
                "   FOR UPDATE SKIP LOCKED"
            ),
            purge=f"DELETE FROM {t}\n WHERE {_in_list()}",
            # Checks at startup that the table exists with every column (no row is read).
            probe=f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n WHERE ID IS NULL",
            limits_probe=f"SELECT MICROSERVICE, ACTION\n  FROM {limits}\n WHERE ACTION IS NULL",
            list_jobs=(
                f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n"
                " WHERE MICROSERVICE = :microservice\n"
                f"   AND (:any_status = 1 OR {_in_list('STATUS', 'status', STATUS_LIST_SIZE)})\n"
                f"{_ADMIN_FILTER}\n"
                "   AND (:after_id IS NULL OR CREATED_AT < :after_created\n"
                "        OR (CREATED_AT = :after_created AND ID < :after_id))\n"
                " ORDER BY CREATED_AT DESC, ID DESC\n"
                " FETCH FIRST :page_size ROWS ONLY"
            ),
            filter_failed=(
                f"SELECT ID\n  FROM {t}\n WHERE MICROSERVICE = :microservice\n"
                f"   AND STATUS = {_FAILED}\n{_ADMIN_FILTER}"
            ),
            # Back to Ready with fresh attempts; a key held meanwhile by another unfinished
            # job refuses the row (ORA-00001), which the batch skips.
            retry_failed=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_READY},\n"
                "       ATTEMPTS = 0,\n"
                f"       RUN_AT = {NOW},\n"
                "       ASSIGNED_AT = NULL,\n"
                "       STARTED_AT = NULL,\n"
                "       FINISHED_AT = NULL,\n"
                "       LEASE_OWNER = NULL,\n"
                "       LEASE_TOKEN = NULL,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                "       RESULTS = NULL,\n"
                "       ERROR_CODE = NULL,\n"
                "       ERROR_MESSAGE = NULL,\n"
                "       RUNTIME_MS = NULL,\n"
                "       CANCEL_REQUESTED = 0,\n"
                f"       UPDATED_AT = {NOW}\n"
                " WHERE ID = :id\n"
                "   AND MICROSERVICE = :microservice\n"
                f"   AND STATUS = {_FAILED}"
            ),
            cancel_waiting=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_FAILED},\n"
                "       ERROR_CODE = :error_code,\n"
                "       ERROR_MESSAGE = :error_message,\n"
                f"       FINISHED_AT = {NOW},\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                f"       UPDATED_AT = {NOW}\n"
                " WHERE ID = :id\n"
                f"   AND STATUS IN ({_READY}, {_ASSIGNED})"
            ),
            cancel_running=(
                f"UPDATE {t}\n"
                "   SET CANCEL_REQUESTED = 1,\n"
                f"       UPDATED_AT = {NOW}\n"
                " WHERE ID = :id\n"
                f"   AND STATUS = {_PROCESSING}"
            ),
            activity_counts=(
                "SELECT ACTION, STATUS, COUNT(*),\n"
                f"       MIN(CASE WHEN STATUS = {_READY} AND RUN_AT <= {NOW} THEN RUN_AT END)\n"
                f"  FROM {t}\n WHERE MICROSERVICE = :microservice\n"
                " GROUP BY ACTION, STATUS"
            ),
            activity_minutes=(
                f"SELECT TRUNC({DONE_FINISHED}, 'MI'), {DONE_STATUS}, COUNT(*)\n"
                f"  FROM {t}\n WHERE {DONE_MS} = :microservice\n"
                f"   AND {DONE_FINISHED} >= :since\n"
                f" GROUP BY TRUNC({DONE_FINISHED}, 'MI'), {DONE_STATUS}"
            ),
            db_now=f"SELECT {NOW}\n  FROM DUAL",
        )

    def as_dict(self) -> dict[str, str]:
        """Statement name -> SQL text."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: ORA codes ``apply`` treats as "already there": name in use, column list already indexed,
#: column already exists, constraint already exists.
DDL_IGNORED_ERRORS = frozenset({955, 1408, 1430, 2260, 2261, 2275})


def ddl_statements(table: TableName) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``table`` (19c and later), then the
    small table that serializes the claimers of actions with a ``max_running``."""
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
        f"    UNIQUE_KEY       {UPGRADE_COLUMNS['UNIQUE_KEY']},\n"
        f"    CANCEL_REQUESTED {UPGRADE_COLUMNS['CANCEL_REQUESTED']},\n"
        f"    CONSTRAINT {table.object_name('PK')} PRIMARY KEY (ID),\n"
        f"    CONSTRAINT {table.object_name('STATUS_CK')} CHECK (STATUS IN ({_ALL_STATUSES})),\n"
        f"    CONSTRAINT {table.object_name('ATTEMPTS_CK')}"
        " CHECK (ATTEMPTS >= 0 AND MAX_ATTEMPTS >= 1)\n"
        ")"
    )
    statements = [create]
    for suffix, (unique, exprs) in INDEXES.items():
        cols = ",\n".join(f"    {e}" for e in exprs)
        kind = "UNIQUE INDEX" if unique else "INDEX"
        statements.append(f"CREATE {kind} {table.qualified_object(suffix)} ON {t} (\n{cols}\n)")
    statements.append(
        f"CREATE TABLE {table.qualified_object('LIMITS')} (\n"
        "    MICROSERVICE     VARCHAR2(128 CHAR) NOT NULL,\n"
        "    ACTION           VARCHAR2(256 CHAR) NOT NULL,\n"
        f"    CONSTRAINT {table.object_name('LIMITS_PK')} PRIMARY KEY (MICROSERVICE, ACTION)\n"
        ")"
    )
    return statements


def upgrade_statements(table: TableName, missing: set[str] | frozenset[str]) -> list[str]:
    """``ALTER TABLE ... ADD`` for the ``missing`` upgrade columns of an older table."""
    return [
        f"ALTER TABLE {table.quoted} ADD ({name} {definition})"
        for name, definition in UPGRADE_COLUMNS.items()
        if name in missing
    ]
