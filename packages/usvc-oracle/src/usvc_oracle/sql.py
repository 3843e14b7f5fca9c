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
    "ATTEMPT_COLUMNS",
    "BASE_COLUMNS",
    "CLAIM_COLUMNS",
    "CLAIM_STARTED_COLUMNS",
    "COLUMNS_QUERY",
    "DDL_IGNORED_ERRORS",
    "DDL_LOCK_TIMEOUT_SECONDS",
    "DESCENDING_INDEXES_QUERY",
    "IDENTITY_OPTIONS",
    "INDEXES",
    "INDEX_ATTRIBUTES",
    "INDEX_STATE_QUERY",
    "IN_LIST_SIZE",
    "JOB_COLUMNS",
    "OBSOLETE_INDEXES",
    "ROW_LOCK_WAIT_SECONDS",
    "SET_DDL_LOCK_TIMEOUT",
    "STATUS_LIST_SIZE",
    "SYNONYM_QUERY",
    "TABLE_ATTRIBUTES",
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
#: A Ready job the claim may take now: not deferred. A job written with a delay (enqueue
#: with delay_seconds, a retry's backoff) is Ready with DELAYED = 1 and sits in the small
#: DELAY_IX instead; a claim moves the due ones over ("promotes" them), so the claim's index
#: holds due jobs only and a claim never reads future-dated entries.
_CLAIMABLE = f"STATUS = {_READY} AND DELAYED IS NULL"
_DEFERRED = f"STATUS = {_READY} AND DELAYED = 1"
CLAIM_MS = _when(_CLAIMABLE, "MICROSERVICE")
CLAIM_PRIORITY = _when(_CLAIMABLE, "-PRIORITY")  # ascending: highest first
CLAIM_RUN_AT = _when(_CLAIMABLE, "RUN_AT")
CLAIM_ID = _when(_CLAIMABLE, "ID")
CLAIM_ACTION = _when(_CLAIMABLE, "ACTION")  # a full action is skipped inside the index
DELAY_MS = _when(_DEFERRED, "MICROSERVICE")
DELAY_RUN_AT = _when(_DEFERRED, "RUN_AT")
DELAY_ID = _when(_DEFERRED, "ID")
DELAY_ACTION = _when(_DEFERRED, "ACTION")
LEASED_MS = _when(_LEASED, "MICROSERVICE")
LEASED_EXPIRES = _when(_LEASED, "LEASE_EXPIRES_AT")
LEASED_STATUS = _when(_LEASED, "STATUS")
LEASED_ACTION = _when(_LEASED, "ACTION")
DONE_MS = _when(_DONE, "MICROSERVICE")
DONE_FINISHED = _when(_DONE, "FINISHED_AT")
DONE_STATUS = _when(_DONE, "STATUS")
DONE_ACTION = _when(_DONE, "ACTION")
FAILED_MS = _when(f"STATUS = {_FAILED}", "MICROSERVICE")
FAILED_CREATED = _when(f"STATUS = {_FAILED}", "CREATED_AT")
FAILED_ID = _when(f"STATUS = {_FAILED}", "ID")
FAILED_ACTION = _when(f"STATUS = {_FAILED}", "ACTION")
FAILED_ERROR = _when(f"STATUS = {_FAILED}", "ERROR_CODE")
IDEM_MS = _when(f"{_UNFINISHED} AND IDEMPOTENCY_KEY IS NOT NULL", "MICROSERVICE")
IDEM_KEY = _when(_UNFINISHED, "IDEMPOTENCY_KEY")
UNIQ_MS = _when("UNIQUE_KEY IS NOT NULL", "MICROSERVICE")
KEYS_MS = _when("IDEMPOTENCY_KEY IS NOT NULL", "MICROSERVICE")

#: suffix -> (unique, key expressions); every key ascending (see the module docstring).
#: Each query that runs often or reads many rows finds every column it needs in one of these
#: (no table visit): the claim, the promotion of due delayed jobs, the running counts, the
#: reclaim, the purge, stats, activity and the failed-job filter.
INDEXES: dict[str, tuple[bool, tuple[str, ...]]] = {
    "CLAIM_IX": (False, (CLAIM_MS, CLAIM_PRIORITY, CLAIM_RUN_AT, CLAIM_ID, CLAIM_ACTION)),
    "DELAY_IX": (False, (DELAY_MS, DELAY_RUN_AT, DELAY_ID, DELAY_ACTION)),
    "LEASED_IX": (False, (LEASED_MS, LEASED_EXPIRES, LEASED_STATUS, LEASED_ACTION)),
    "FINISHED_IX": (False, (DONE_MS, DONE_FINISHED, DONE_STATUS, DONE_ACTION)),
    "FAILED_IX": (
        False,
        (FAILED_MS, FAILED_CREATED, FAILED_ID, FAILED_ACTION, FAILED_ERROR),
    ),
    "IDEM_UX": (True, (IDEM_MS, IDEM_KEY)),
    # Rows without a unique key have an all-NULL key and stay out of the index.
    "UNIQ_UX": (True, (UNIQ_MS, "UNIQUE_KEY")),
    # The operators' listing, newest first; its columns never change after the insert,
    # so transitions do not maintain it.
    "LIST_IX": (False, ("MICROSERVICE", "CREATED_AT", "ID")),
    # An operator's lookup by idempotency key, finished jobs too (IDEM_UX holds only the
    # unfinished ones); written once at the insert, never maintained by a transition.
    "KEYS_IX": (False, (KEYS_MS, "IDEMPOTENCY_KEY", "ID")),
}
#: Indexes of earlier versions that the ones above replace: ``check`` names them, and the
#: README says when to drop them (once no worker of an older version runs).
OBSOLETE_INDEXES = ("READY_IX", "LEASE_IX", "DONE_IX")
#: Physical attributes (sqlglot does not parse them; the tests check them apart).
TABLE_ATTRIBUTES = "PCTFREE 30 INITRANS 8"
INDEX_ATTRIBUTES = "INITRANS 16"
IDENTITY_OPTIONS = "(CACHE 1000 NOORDER)"
#: How long ``apply`` waits for the table lock a DDL on a live table needs.
DDL_LOCK_TIMEOUT_SECONDS = 30
SET_DDL_LOCK_TIMEOUT = f"ALTER SESSION SET DDL_LOCK_TIMEOUT = {DDL_LOCK_TIMEOUT_SECONDS}"

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
    "DELAYED",
    "ATTEMPT_NO",
    "START_CONFIRMED",
    "ATTEMPT_GIVEN_BACK",
)

#: Columns added after the first layout: ``apply`` adds them to an older table.
UPGRADE_COLUMNS: dict[str, str] = {
    "UNIQUE_KEY": "VARCHAR2(256 CHAR)",
    "CANCEL_REQUESTED": "NUMBER(1) DEFAULT 0 NOT NULL",
    # 1: Ready with a future RUN_AT when written (out of the claim's index until due).
    "DELAYED": "NUMBER(1)",
    # Every start over the job's life (the attempt history's numbers; ATTEMPTS is reset by
    # an operator's retry and given back by a release).
    "ATTEMPT_NO": "NUMBER(10) DEFAULT 0 NOT NULL",
    # 0 from claim_and_start until mark_processing or a lease renewal confirms the start
    # (a row of an older version counts as confirmed). Every way back to Ready sets 1, so a
    # worker of the previous version (which does not know the column) during a rolling
    # upgrade never starts a row that looks unconfirmed.
    "START_CONFIRMED": "NUMBER(1) DEFAULT 1 NOT NULL",
    # 1 once a reclaim gave back the attempt of a start never confirmed (only once per job).
    "ATTEMPT_GIVEN_BACK": "NUMBER(1) DEFAULT 0 NOT NULL",
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

#: The columns of a closed attempt (``<table>_ATTEMPTS``), in the order ``attempts`` reads.
ATTEMPT_COLUMNS = (
    "ATTEMPT_NO",
    "WORKER_ID",
    "STARTED_AT",
    "FINISHED_AT",
    "OUTCOME",
    "ERROR_CODE",
    "ERROR_MESSAGE",
)

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


#: What a name the user sees stands for: its own table, else a private or public synonym
#: (followed one level; a worker account often reaches the queue through one).
SYNONYM_QUERY = (
    "SELECT TABLE_OWNER, TABLE_NAME\n  FROM ALL_SYNONYMS\n"
    " WHERE SYNONYM_NAME = :table_name\n"
    "   AND OWNER IN (NVL(:owner, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')), 'PUBLIC')\n"
    " ORDER BY CASE WHEN OWNER = 'PUBLIC' THEN 1 ELSE 0 END"
)

#: The table's indexes with their state: VALID (or N/A for a partitioned one) and, for a
#: function-based one, FUNCIDX_STATUS ENABLED; otherwise the optimizer cannot use it.
INDEX_STATE_QUERY = (
    "SELECT INDEX_NAME, STATUS, FUNCIDX_STATUS\n  FROM ALL_INDEXES\n"
    " WHERE TABLE_OWNER = NVL(:owner, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'))\n"
    "   AND TABLE_NAME = :table_name"
)


def in_list_binds(prefix: str = "id", size: int = IN_LIST_SIZE) -> list[str]:
    """The bind names of one padded IN list: id0 ... id49."""
    return [f"{prefix}{i}" for i in range(size)]


def _in_list(column: str = "ID", prefix: str = "id", size: int = IN_LIST_SIZE) -> str:
    return f"{column} IN (" + ", ".join(f":{b}" for b in in_list_binds(prefix, size)) + ")"


def _returning(columns: tuple[str, ...]) -> str:
    outs = ", ".join(f":o_{c.lower()}" for c in columns)
    return f"RETURNING {', '.join(columns)} INTO {outs}"


#: The listing's further filters (``JobFilter.scheduled`` and ``error_text``): a scheduled
#: job is Ready with a RUN_AT still ahead (derived, never stored); the error text is found
#: with INSTR, which has no wildcards (``%`` and ``_`` match themselves).
_LIST_FILTER = (
    "   AND (:scheduled IS NULL\n"
    f"        OR (:scheduled = 1 AND STATUS = {_READY} AND RUN_AT > {NOW})\n"
    f"        OR (:scheduled = 0 AND (STATUS <> {_READY} OR RUN_AT <= {NOW})))\n"
    "   AND (:error_text IS NULL OR INSTR(LOWER(ERROR_MESSAGE), LOWER(:error_text)) > 0)"
)


def _admin_filter(
    action: str = "ACTION", error: str = "ERROR_CODE", created: str = "CREATED_AT"
) -> str:
    """The operators' filters (``JobFilter``) on these column expressions; a flag bind of
    1 means "this set is empty: match everything", since a padded IN list cannot say that."""
    return (
        f"   AND (:any_action = 1 OR {_in_list(action, 'action')})\n"
        f"   AND (:any_error = 1 OR {_in_list(error, 'error')})\n"
        f"   AND (:created_after IS NULL OR {created} >= :created_after)\n"
        f"   AND (:created_before IS NULL OR {created} < :created_before)"
    )


def _history(
    table: TableName, where: str, *, outcome: str, code: str, message: str, finished: str = NOW
) -> str:
    """Close the current attempt of the rows ``where`` selects into ``<table>_ATTEMPTS``,
    before the transition that sends them back to Ready clears STARTED_AT (same
    transaction). The table is a ring of ``:keep`` slots per job (slot = attempt number
    modulo ``:keep``): one MERGE keeps the last attempts only, no trimming DELETE."""
    t = table.quoted
    attempts = table.qualified_object("ATTEMPTS")
    return (
        f"MERGE INTO {attempts} a\n"
        "USING (SELECT ID, ATTEMPT_NO, LEASE_OWNER, STARTED_AT,\n"
        f"              {finished} AS CLOSED_AT,\n"
        f"              {outcome} AS OUTCOME,\n"
        f"              {code} AS CLOSED_CODE,\n"
        f"              {message} AS CLOSED_MESSAGE\n"
        f"         FROM {t}\n"
        f"        WHERE {where}) j\n"
        "   ON (a.JOB_ID = j.ID AND a.SLOT = MOD(j.ATTEMPT_NO, :keep))\n"
        " WHEN MATCHED THEN UPDATE SET a.ATTEMPT_NO = j.ATTEMPT_NO,\n"
        "      a.WORKER_ID = j.LEASE_OWNER, a.STARTED_AT = j.STARTED_AT,\n"
        "      a.FINISHED_AT = j.CLOSED_AT, a.OUTCOME = j.OUTCOME,\n"
        "      a.ERROR_CODE = j.CLOSED_CODE, a.ERROR_MESSAGE = j.CLOSED_MESSAGE\n"
        " WHEN NOT MATCHED THEN INSERT (JOB_ID, SLOT, ATTEMPT_NO, WORKER_ID, STARTED_AT,\n"
        "      FINISHED_AT, OUTCOME, ERROR_CODE, ERROR_MESSAGE)\n"
        "      VALUES (j.ID, MOD(j.ATTEMPT_NO, :keep), j.ATTEMPT_NO, j.LEASE_OWNER,\n"
        "      j.STARTED_AT, j.CLOSED_AT, j.OUTCOME, j.CLOSED_CODE, j.CLOSED_MESSAGE)"
    )


#: A Processing row whose start was never confirmed and never given back: a reclaim gives
#: its attempt back (once per job).
_UNSTARTED = "START_CONFIRMED = 0 AND ATTEMPT_GIVEN_BACK = 0"
#: A reclaimed Processing row goes back to Ready (else it fails: no attempts left).
_AGAIN = f"({_UNSTARTED} OR ATTEMPTS < MAX_ATTEMPTS)"


#: The stats' branch on the claim index: Ready jobs not deferred, the oldest due one's
#: RUN_AT, the database's clock, and the ones not due yet (columns named for the union).
_STATS_CLAIM_BRANCH = (
    f"SELECT {_READY} AS JOB_STATUS, COUNT(*) AS JOB_COUNT,\n"
    f"       MIN(CASE WHEN {CLAIM_RUN_AT} <= {NOW} THEN {CLAIM_RUN_AT} END)"
    " AS OLDEST_DUE,\n"
    f"       MAX({NOW}) AS DB_NOW,\n"
    f"       COUNT(CASE WHEN {CLAIM_RUN_AT} > {NOW} THEN 1 END) AS SCHEDULED\n"
    "  FROM {t}\n"
    f" WHERE {CLAIM_MS} = :microservice\n"
)
# The owned jobs by status (few: the workers' slots), in stats and stats_upto alike.
_STATS_LEASED_BRANCH = (
    f"SELECT {LEASED_STATUS}, COUNT(*),\n"
    "       CAST(NULL AS TIMESTAMP(6)), CAST(NULL AS TIMESTAMP(6)), 0\n"
    "  FROM {t}\n"
    f" WHERE {LEASED_MS} = :microservice\n"
    f" GROUP BY {LEASED_STATUS}\n"
)


def _upto(t: str, status: str, leading: str, *more: str) -> str:
    """One status's count stopped at :count_limit: the first entries of the index that
    ``leading`` (its leading key) opens, ``more`` filtering within it."""
    where = "".join(f"\n           AND {m}" for m in more)
    return (
        f"SELECT {status}, COUNT(*), CAST(NULL AS TIMESTAMP(6)), CAST(NULL AS TIMESTAMP(6)), 0\n"
        "  FROM (SELECT 1\n"
        f"          FROM {t}\n"
        f"         WHERE {leading} = :microservice{where}\n"
        "         FETCH FIRST :count_limit ROWS ONLY)\n"
    )


@dataclass(frozen=True, slots=True)
class Statements:
    """The runtime SQL for one table. Build with :meth:`render`."""

    enqueue: str
    idempotency_holder: str
    unique_holder: str
    claim_lock: str
    claim_lock_except: str
    claim_update: str
    promote_lock: str
    promote: str
    claim_start_update: str
    fail_exhausted: str
    limit_lock: str
    limit_insert: str
    running_counts: str
    limit_waiting: str
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
    stats_upto: str
    purge_lock: str
    purge: str
    probe: str
    limits_probe: str
    list_jobs: str
    list_jobs_after: str
    filter_failed: str
    filter_failed_text: str
    retry_failed: str
    cancel_waiting: str
    cancel_running: str
    activity_counts: str
    activity_minutes: str
    db_now: str
    heartbeat: str
    remove_worker: str
    list_workers: str
    gone_lock: str
    end_leases: str
    forget_gone: str
    pause: str
    resume: str
    paused: str
    workers_probe: str
    paused_probe: str
    find_by_id: str
    find_by_unique: str
    find_by_idempotency: str
    forget_sessions: str
    revoke_session: str
    session_revoked: str
    attempts: str
    attempts_probe: str
    history_retry: str
    history_release: str
    history_reclaim: str
    history_retry_failed: str

    @classmethod
    def render(cls, table: TableName) -> Statements:
        t = table.quoted
        limits = table.qualified_object("LIMITS")
        workers = table.qualified_object("WORKERS")
        paused = table.qualified_object("PAUSED")
        sessions = table.qualified_object("SESSIONS")
        attempts = table.qualified_object("ATTEMPTS")
        # A worker is gone once the database clock passes two of its heartbeats.
        gone = f"LAST_SEEN_AT + NUMTODSINTERVAL(:gone_after * HEARTBEAT_SECONDS, 'SECOND') < {NOW}"
        claim_ix = table.object_name("CLAIM_IX")
        owned = "WHERE ID = :id\n   AND LEASE_TOKEN = :lease_token"
        claim_lock = (
            f"SELECT /*+ INDEX(q {claim_ix}) */ ID, ACTION, ATTEMPTS, MAX_ATTEMPTS\n"
            f"  FROM {t} q\n"
            f" WHERE {CLAIM_MS} = :microservice\n"
            f"   AND {CLAIM_RUN_AT} <= {NOW}\n"
            "{extra}"
            # An operator's pause (FleetAdmin): a primary-key probe per candidate row, in
            # the claim's own statement (no round trip; every claimer sees it at once).
            f"   AND NOT EXISTS (SELECT 1 FROM {paused} p\n"
            "                    WHERE p.MICROSERVICE = :microservice AND p.ACTION = q.ACTION)\n"
            f" ORDER BY {CLAIM_PRIORITY},\n"
            f"          {CLAIM_RUN_AT},\n"
            f"          {CLAIM_ID}\n"
            "   FOR UPDATE SKIP LOCKED"
        )
        return cls(
            enqueue=(
                f"INSERT INTO {t} (MICROSERVICE, ACTION, STATUS, PRIORITY, PAYLOAD, TOKEN,\n"
                "    IDEMPOTENCY_KEY, UNIQUE_KEY, ATTEMPTS, MAX_ATTEMPTS, RUN_AT, DELAYED,\n"
                "    CREATED_AT, UPDATED_AT)\n"
                f"VALUES (:microservice, :action, {_READY}, :priority, :payload, :token,\n"
                "    :idempotency_key, :unique_key, 0, :max_attempts,\n"
                f"    {_plus('delay_seconds')}, CASE WHEN :delay_seconds > 0 THEN 1 END,\n"
                f"    {NOW}, {NOW})\n" + _returning(("ID", "RUN_AT", "CREATED_AT", "UPDATED_AT"))
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
                f"   AND ({CLAIM_ACTION} IS NULL OR NOT {_in_list(CLAIM_ACTION, 'skip')})\n",
            ),
            # Due delayed jobs, oldest first, moved into the claim's index (promote).
            promote_lock=(
                f"SELECT ID\n  FROM {t}\n"
                f" WHERE {DELAY_MS} = :microservice\n"
                f"   AND {DELAY_RUN_AT} <= {NOW}\n"
                f" ORDER BY {DELAY_RUN_AT},\n"
                f"          {DELAY_ID}\n"
                "   FOR UPDATE SKIP LOCKED"
            ),
            promote=(
                f"UPDATE {t}\n   SET DELAYED = NULL\n WHERE {_in_list()}\n"
                f"   AND STATUS = {_READY}\n   AND DELAYED = 1"
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
                "       ATTEMPT_NO = ATTEMPT_NO + 1,\n"
                "       START_CONFIRMED = 0,\n"
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
                f"SELECT {LEASED_ACTION}, COUNT(*)\n  FROM {t}\n"
                f" WHERE {LEASED_MS} = :microservice\n"
                f"   AND {_in_list(LEASED_ACTION, 'action')}\n GROUP BY {LEASED_ACTION}"
            ),
            # When the oldest due job of a limited action became due (the claim warns when
            # that action has been skipped for long, see OracleQueue).
            limit_waiting=(
                f"SELECT MIN({CLAIM_RUN_AT}), MAX({NOW})\n  FROM {t}\n"
                f" WHERE {CLAIM_MS} = :microservice\n"
                f"   AND {CLAIM_ACTION} = :action\n"
                f"   AND {CLAIM_RUN_AT} <= {NOW}"
            ),
            mark_processing=(
                f"UPDATE {t}\n"
                f"   SET STATUS = {_PROCESSING},\n"
                "       ATTEMPTS = ATTEMPTS + 1,\n"
                "       ATTEMPT_NO = ATTEMPT_NO + 1,\n"
                "       START_CONFIRMED = 1,\n"
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
                # its claimer holds it: a claim_and_start's start is confirmed
                "       START_CONFIRMED = 1,\n"
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
                "       DELAYED = CASE WHEN ATTEMPTS < MAX_ATTEMPTS AND :delay_seconds > 0"
                " THEN 1 END,\n"
                "       FINISHED_AT = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                f" THEN NULL ELSE {NOW} END,\n"
                "       STARTED_AT = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                " THEN NULL ELSE STARTED_AT END,\n"
                "       LEASE_OWNER = CASE WHEN ATTEMPTS < MAX_ATTEMPTS"
                " THEN NULL ELSE LEASE_OWNER END,\n"
                "       ERROR_CODE = :error_code,\n"
                "       ERROR_MESSAGE = :error_message,\n"
                "       RUNTIME_MS = :runtime_ms,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                "       CANCEL_REQUESTED = 0,\n"
                "       START_CONFIRMED = 1,\n"
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
                "       START_CONFIRMED = 1,\n"
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
            # A start never confirmed (claim_and_start whose reply was lost) gets its attempt
            # back, once per job; otherwise Ready while attempts are left, else Failed.
            reclaim_processing=(
                f"UPDATE {t}\n"
                f"   SET STATUS = CASE WHEN {_AGAIN} THEN {_READY} ELSE {_FAILED} END,\n"
                f"       ATTEMPTS = CASE WHEN {_UNSTARTED} AND ATTEMPTS > 0"
                " THEN ATTEMPTS - 1 ELSE ATTEMPTS END,\n"
                f"       ATTEMPT_GIVEN_BACK = CASE WHEN {_UNSTARTED}"
                " THEN 1 ELSE ATTEMPT_GIVEN_BACK END,\n"
                f"       FINISHED_AT = CASE WHEN {_AGAIN} THEN NULL ELSE {NOW} END,\n"
                f"       STARTED_AT = CASE WHEN {_AGAIN} THEN NULL ELSE STARTED_AT END,\n"
                f"       LEASE_OWNER = CASE WHEN {_AGAIN} THEN NULL ELSE LEASE_OWNER END,\n"
                f"       LEASE_TOKEN = CASE WHEN {_AGAIN} THEN NULL ELSE LEASE_TOKEN END,\n"
                "       ERROR_CODE = :error_code,\n"
                f"       ERROR_MESSAGE = CASE WHEN {_UNSTARTED}"
                " THEN :unstarted_message || LEASE_OWNER || :unstarted_tail\n"
                "            WHEN ATTEMPTS < MAX_ATTEMPTS THEN :requeued_message\n"
                "            ELSE :failed_message END,\n"
                "       LEASE_EXPIRES_AT = NULL,\n"
                "       CANCEL_REQUESTED = 0,\n"
                "       START_CONFIRMED = 1,\n"
                f"       UPDATED_AT = {NOW}\n"
                f" WHERE {_in_list()}\n"
                f"   AND STATUS = {_PROCESSING}\n"
                f"   AND LEASE_EXPIRES_AT < {NOW}\n"
                "RETURNING ID, STATUS INTO :o_id, :o_status"
            ),
            get=f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n WHERE ID = :id",
            # One branch per index, each read from its index alone: counts, and the oldest
            # due Ready job (its RUN_AT; due delayed ones not yet promoted count too).
            stats=(
                _STATS_CLAIM_BRANCH.format(t=t) + "UNION ALL\n"
                f"SELECT {_READY}, COUNT(*),\n"
                f"       MIN(CASE WHEN {DELAY_RUN_AT} <= {NOW} THEN {DELAY_RUN_AT} END),\n"
                f"       MAX({NOW}), COUNT(CASE WHEN {DELAY_RUN_AT} > {NOW} THEN 1 END)\n"
                f"  FROM {t}\n WHERE {DELAY_MS} = :microservice\n"
                "UNION ALL\n" + _STATS_LEASED_BRANCH.format(t=t) + "UNION ALL\n"
                f"SELECT {DONE_STATUS}, COUNT(*),\n"
                "       CAST(NULL AS TIMESTAMP(6)), CAST(NULL AS TIMESTAMP(6)), 0\n"
                f"  FROM {t}\n WHERE {DONE_MS} = :microservice\n"
                f" GROUP BY {DONE_STATUS}"
            ),
            # stats with each count stopped at :count_limit (the worker's sample): the
            # deferred, Completed and Failed counts read at most that many index entries.
            # The claim index's branch stays whole: its oldest due RUN_AT needs every entry
            # of the service there (PRIORITY leads RUN_AT), so its count rides on that
            # pass and is cut by the caller; the owned jobs are few (the workers' slots).
            stats_upto=(
                _STATS_CLAIM_BRANCH.format(t=t)
                + "UNION ALL\n"
                + _upto(t, _READY, DELAY_MS)
                + "UNION ALL\n"
                f"SELECT {_READY}, 0, CAST(NULL AS TIMESTAMP(6)), CAST(NULL AS TIMESTAMP(6)),"
                " COUNT(*)\n"
                "  FROM (SELECT 1\n"
                f"          FROM {t}\n"
                f"         WHERE {DELAY_MS} = :microservice\n"
                f"           AND {DELAY_RUN_AT} > {NOW}\n"
                "         FETCH FIRST :count_limit ROWS ONLY)\n"
                "UNION ALL\n"
                f"SELECT {_READY}, 0, MIN({DELAY_RUN_AT}), MAX({NOW}), 0\n"
                f"  FROM {t}\n WHERE {DELAY_MS} = :microservice\n"
                f"   AND {DELAY_RUN_AT} <= {NOW}\n"
                "UNION ALL\n"
                + _STATS_LEASED_BRANCH.format(t=t)
                + "UNION ALL\n"
                + _upto(t, _COMPLETED, DONE_MS, f"{DONE_STATUS} = {_COMPLETED}")
                + "UNION ALL\n"
                + _upto(t, _FAILED, FAILED_MS)
            ).rstrip("\n"),
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
                f"{_admin_filter()}\n{_LIST_FILTER}\n"
                " ORDER BY CREATED_AT DESC, ID DESC\n"
                " FETCH FIRST :page_size ROWS ONLY"
            ),
            # The next page starts where the last one ended: CREATED_AT <= the cursor's is
            # the index range's start (a seek), the tie on CREATED_AT is broken by ID.
            list_jobs_after=(
                f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n"
                " WHERE MICROSERVICE = :microservice\n"
                "   AND CREATED_AT <= :after_created\n"
                "   AND (CREATED_AT < :after_created OR ID < :after_id)\n"
                f"   AND (:any_status = 1 OR {_in_list('STATUS', 'status', STATUS_LIST_SIZE)})\n"
                f"{_admin_filter()}\n{_LIST_FILTER}\n"
                " ORDER BY CREATED_AT DESC, ID DESC\n"
                " FETCH FIRST :page_size ROWS ONLY"
            ),
            # Read from FAILED_IX alone (its ID key is the row's ID).
            filter_failed=(
                f"SELECT {FAILED_ID}\n  FROM {t}\n WHERE {FAILED_MS} = :microservice\n"
                f"{_admin_filter(FAILED_ACTION, FAILED_ERROR, FAILED_CREATED)}"
            ),
            # The same with a text in the error message (read from the table's rows).
            filter_failed_text=(
                f"SELECT {FAILED_ID}\n  FROM {t}\n WHERE {FAILED_MS} = :microservice\n"
                f"{_admin_filter(FAILED_ACTION, FAILED_ERROR, FAILED_CREATED)}\n"
                "   AND INSTR(LOWER(ERROR_MESSAGE), LOWER(:error_text)) > 0"
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
                "       DELAYED = NULL,\n"
                "       START_CONFIRMED = 1,\n"
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
            # Per action and status, from the four status indexes alone (the finished
            # branch reads every finished row of the service: retention keeps it small).
            activity_counts=(
                f"SELECT {CLAIM_ACTION}, {_READY}, COUNT(*),\n"
                f"       MIN(CASE WHEN {CLAIM_RUN_AT} <= {NOW} THEN {CLAIM_RUN_AT} END),\n"
                f"       COUNT(CASE WHEN {CLAIM_RUN_AT} > {NOW} THEN 1 END)\n"
                f"  FROM {t}\n WHERE {CLAIM_MS} = :microservice\n"
                f" GROUP BY {CLAIM_ACTION}\n"
                "UNION ALL\n"
                f"SELECT {DELAY_ACTION}, {_READY}, COUNT(*),\n"
                f"       MIN(CASE WHEN {DELAY_RUN_AT} <= {NOW} THEN {DELAY_RUN_AT} END),\n"
                f"       COUNT(CASE WHEN {DELAY_RUN_AT} > {NOW} THEN 1 END)\n"
                f"  FROM {t}\n WHERE {DELAY_MS} = :microservice\n"
                f" GROUP BY {DELAY_ACTION}\n"
                "UNION ALL\n"
                f"SELECT {LEASED_ACTION}, {LEASED_STATUS}, COUNT(*),\n"
                "       CAST(NULL AS TIMESTAMP(6)), 0\n"
                f"  FROM {t}\n WHERE {LEASED_MS} = :microservice\n"
                f" GROUP BY {LEASED_ACTION}, {LEASED_STATUS}\n"
                "UNION ALL\n"
                f"SELECT {DONE_ACTION}, {DONE_STATUS}, COUNT(*), CAST(NULL AS TIMESTAMP(6)), 0\n"
                f"  FROM {t}\n WHERE {DONE_MS} = :microservice\n"
                f" GROUP BY {DONE_ACTION}, {DONE_STATUS}"
            ),
            activity_minutes=(
                f"SELECT TRUNC({DONE_FINISHED}, 'MI'), {DONE_STATUS}, COUNT(*)\n"
                f"  FROM {t}\n WHERE {DONE_MS} = :microservice\n"
                f"   AND {DONE_FINISHED} >= :since\n"
                f" GROUP BY TRUNC({DONE_FINISHED}, 'MI'), {DONE_STATUS}"
            ),
            db_now=f"SELECT {NOW}\n  FROM DUAL",
            heartbeat=(
                f"MERGE INTO {workers} w\nUSING DUAL\n"
                "   ON (w.MICROSERVICE = :microservice AND w.WORKER_ID = :worker_id)\n"
                " WHEN MATCHED THEN UPDATE SET HOST = :host, PID = :pid, VERSION = :version,\n"
                "      STARTED_AT = :started_at, HEARTBEAT_SECONDS = :heartbeat_seconds,\n"
                "      ACTIONS = :actions, CONCURRENCY = :concurrency, RUNNING = :running,\n"
                f"      LAST_SEEN_AT = {NOW}\n"
                " WHEN NOT MATCHED THEN INSERT (MICROSERVICE, WORKER_ID, HOST, PID, VERSION,\n"
                "      STARTED_AT, HEARTBEAT_SECONDS, ACTIONS, CONCURRENCY, RUNNING,\n"
                "      LAST_SEEN_AT)\n"
                "      VALUES (:microservice, :worker_id, :host, :pid, :version, :started_at,\n"
                "      :heartbeat_seconds, :actions, :concurrency, :running,\n"
                f"      {NOW})"
            ),
            remove_worker=(
                f"DELETE FROM {workers}\n WHERE MICROSERVICE = :microservice\n"
                "   AND WORKER_ID = :worker_id"
            ),
            list_workers=(
                "SELECT WORKER_ID, MICROSERVICE, HOST, PID, VERSION, STARTED_AT,\n"
                "       HEARTBEAT_SECONDS, ACTIONS, CONCURRENCY, RUNNING, LAST_SEEN_AT,\n"
                f"       CASE WHEN {gone} THEN 1 ELSE 0 END\n"
                f"  FROM {workers}\n WHERE MICROSERVICE = :microservice\n"
                " ORDER BY STARTED_AT, WORKER_ID"
            ),
            # The leased jobs of the service's gone workers (their leases end at once).
            gone_lock=(
                f"SELECT ID\n  FROM {t}\n"
                f" WHERE {LEASED_MS} = :microservice\n"
                f"   AND LEASE_OWNER IN (SELECT WORKER_ID FROM {workers}\n"
                f"                        WHERE MICROSERVICE = :microservice AND {gone})\n"
                "   FOR UPDATE SKIP LOCKED"
            ),
            end_leases=(
                f"UPDATE {t}\n   SET LEASE_EXPIRES_AT = {NOW} - NUMTODSINTERVAL(1, 'SECOND')\n"
                f" WHERE {_in_list()}\n   AND {_LEASED}"
            ),
            forget_gone=(
                f"DELETE FROM {workers}\n WHERE MICROSERVICE = :microservice\n"
                f"   AND {gone}\n"
                f"   AND LAST_SEEN_AT < {NOW} - NUMTODSINTERVAL(:older_than_seconds, 'SECOND')"
            ),
            pause=(
                f"INSERT INTO {paused} (MICROSERVICE, ACTION, PAUSED_AT)\n"
                f"VALUES (:microservice, :action, {NOW})"
            ),
            resume=(
                f"DELETE FROM {paused}\n WHERE MICROSERVICE = :microservice\n"
                "   AND ACTION = :action"
            ),
            paused=(
                f"SELECT ACTION, PAUSED_AT\n  FROM {paused}\n"
                " WHERE MICROSERVICE = :microservice\n ORDER BY ACTION"
            ),
            workers_probe=(
                "SELECT MICROSERVICE, WORKER_ID, HOST, PID, VERSION, STARTED_AT,\n"
                "       HEARTBEAT_SECONDS, ACTIONS, CONCURRENCY, RUNNING, LAST_SEEN_AT\n"
                f"  FROM {workers}\n WHERE WORKER_ID IS NULL"
            ),
            find_by_id=(
                f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n WHERE ID = :id\n"
                "   AND MICROSERVICE = :microservice"
            ),
            find_by_unique=(
                f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n"
                f" WHERE {UNIQ_MS} = :microservice\n   AND UNIQUE_KEY = :key"
            ),
            find_by_idempotency=(
                f"SELECT {', '.join(JOB_COLUMNS)}\n  FROM {t}\n"
                f" WHERE {KEYS_MS} = :microservice\n   AND IDEMPOTENCY_KEY = :key\n"
                " ORDER BY ID DESC\n FETCH FIRST :most ROWS ONLY"
            ),
            forget_sessions=f"DELETE FROM {sessions}\n WHERE UNTIL_AT <= {NOW}",
            revoke_session=(
                f"MERGE INTO {sessions} s\nUSING DUAL\n   ON (s.SESSION_ID = :session_id)\n"
                " WHEN MATCHED THEN UPDATE SET UNTIL_AT = GREATEST(UNTIL_AT, :until)\n"
                " WHEN NOT MATCHED THEN INSERT (SESSION_ID, UNTIL_AT)\n"
                "      VALUES (:session_id, :until)"
            ),
            session_revoked=(
                f"SELECT COUNT(*)\n  FROM {sessions}\n WHERE SESSION_ID = :session_id\n"
                f"   AND UNTIL_AT > {NOW}"
            ),
            paused_probe=(
                f"SELECT MICROSERVICE, ACTION, PAUSED_AT\n  FROM {paused}\n WHERE ACTION IS NULL"
            ),
            # The closed attempts of one job (at most :keep of them: the ring's slots).
            attempts=(
                f"SELECT {', '.join(ATTEMPT_COLUMNS)}\n  FROM {attempts}\n"
                " WHERE JOB_ID = :id\n ORDER BY ATTEMPT_NO"
            ),
            attempts_probe=(
                f"SELECT JOB_ID, SLOT, {', '.join(ATTEMPT_COLUMNS)}\n  FROM {attempts}\n"
                " WHERE JOB_ID IS NULL"
            ),
            # Before ``retry`` when it goes back to Ready (the row is locked by lock_job).
            history_retry=_history(
                table,
                f"ID = :id\n          AND LEASE_TOKEN = :lease_token\n"
                f"          AND STATUS = {_PROCESSING}\n"
                "          AND ATTEMPTS < MAX_ATTEMPTS\n"
                "          AND STARTED_AT IS NOT NULL",
                outcome=":outcome",
                code=":error_code",
                message=":error_message",
            ),
            # Before ``release``: a Processing job's attempt ends, not spent, without error.
            history_release=_history(
                table,
                f"ID = :id\n          AND LEASE_TOKEN = :lease_token\n"
                f"          AND STATUS = {_PROCESSING}\n"
                "          AND STARTED_AT IS NOT NULL",
                outcome=":outcome",
                code="CAST(NULL AS VARCHAR2(64))",
                message="CAST(NULL AS CLOB)",
            ),
            # Before ``reclaim_processing``, for the rows it sends back to Ready.
            history_reclaim=_history(
                table,
                f"{_in_list()}\n          AND STATUS = {_PROCESSING}\n"
                f"          AND LEASE_EXPIRES_AT < {NOW}\n"
                f"          AND {_AGAIN}\n"
                "          AND STARTED_AT IS NOT NULL",
                outcome=f"CASE WHEN {_UNSTARTED} THEN :not_started ELSE :lease_expired END",
                code=":error_code",
                message=f"CASE WHEN {_UNSTARTED}"
                " THEN :unstarted_message || LEASE_OWNER || :unstarted_tail\n"
                "                   ELSE :requeued_message END",
            ),
            # Before ``retry_failed``: a started Failed job's last attempt, as it ended.
            history_retry_failed=_history(
                table,
                "ID = :id\n          AND MICROSERVICE = :microservice\n"
                f"          AND STATUS = {_FAILED}\n"
                "          AND STARTED_AT IS NOT NULL",
                outcome="CASE WHEN ERROR_CODE = :expired_code THEN :lease_expired ELSE :failed END",
                code="ERROR_CODE",
                message="ERROR_MESSAGE",
                finished="FINISHED_AT",
            ),
        )

    def as_dict(self) -> dict[str, str]:
        """Statement name -> SQL text."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: ORA codes ``apply`` treats as "already there": name in use, column list already indexed,
#: column already exists, constraint already exists.
DDL_IGNORED_ERRORS = frozenset({955, 1408, 1430, 2260, 2261, 2275})


def ddl_statements(table: TableName, *, online: bool = False) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``table`` (19c and later), then the
    small tables of the fleet (worker records, paused actions) and the one that serializes
    the claimers of actions with a ``max_running``.

    Sizing for a queue table (rows grow after the insert: timestamps, results, errors; many
    workers update rows of the same blocks): PCTFREE 30 and INITRANS 8 on the table,
    INITRANS 16 on the indexes, an identity cache of 1000 without ordering (RAC).
    ``online``: build the indexes ONLINE, for ``apply`` on a live table (Enterprise
    Edition; ``apply`` falls back to a plain build elsewhere)."""
    t = table.quoted
    create = (
        f"CREATE TABLE {t} (\n"
        "    ID               NUMBER(19) GENERATED BY DEFAULT ON NULL AS IDENTITY"
        f" {IDENTITY_OPTIONS},\n"
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
        f"    DELAYED          {UPGRADE_COLUMNS['DELAYED']},\n"
        f"    ATTEMPT_NO       {UPGRADE_COLUMNS['ATTEMPT_NO']},\n"
        f"    START_CONFIRMED  {UPGRADE_COLUMNS['START_CONFIRMED']},\n"
        f"    ATTEMPT_GIVEN_BACK {UPGRADE_COLUMNS['ATTEMPT_GIVEN_BACK']},\n"
        f"    CONSTRAINT {table.object_name('PK')} PRIMARY KEY (ID),\n"
        f"    CONSTRAINT {table.object_name('STATUS_CK')} CHECK (STATUS IN ({_ALL_STATUSES})),\n"
        f"    CONSTRAINT {table.object_name('ATTEMPTS_CK')}"
        " CHECK (ATTEMPTS >= 0 AND MAX_ATTEMPTS >= 1)\n"
        f") {TABLE_ATTRIBUTES}"
    )
    statements = [create]
    tail = f"{INDEX_ATTRIBUTES} ONLINE" if online else INDEX_ATTRIBUTES
    for suffix, (unique, exprs) in INDEXES.items():
        cols = ",\n".join(f"    {e}" for e in exprs)
        kind = "UNIQUE INDEX" if unique else "INDEX"
        statements.append(
            f"CREATE {kind} {table.qualified_object(suffix)} ON {t} (\n{cols}\n) {tail}"
        )
    statements.append(
        f"CREATE TABLE {table.qualified_object('WORKERS')} (\n"
        "    MICROSERVICE      VARCHAR2(128 CHAR) NOT NULL,\n"
        "    WORKER_ID         VARCHAR2(200 CHAR) NOT NULL,\n"
        "    HOST              VARCHAR2(255 CHAR),\n"
        "    PID               NUMBER(10),\n"
        "    VERSION           VARCHAR2(128 CHAR),\n"
        "    STARTED_AT        TIMESTAMP(6),\n"
        "    HEARTBEAT_SECONDS NUMBER NOT NULL,\n"
        "    ACTIONS           CLOB,\n"
        "    CONCURRENCY       NUMBER(10),\n"
        "    RUNNING           NUMBER(10),\n"
        "    LAST_SEEN_AT      TIMESTAMP(6) NOT NULL,\n"
        f"    CONSTRAINT {table.object_name('WORKERS_PK')} PRIMARY KEY (MICROSERVICE, WORKER_ID)\n"
        ")"
    )
    statements.append(
        f"CREATE TABLE {table.qualified_object('PAUSED')} (\n"
        "    MICROSERVICE      VARCHAR2(128 CHAR) NOT NULL,\n"
        "    ACTION            VARCHAR2(256 CHAR) NOT NULL,\n"
        "    PAUSED_AT         TIMESTAMP(6) NOT NULL,\n"
        f"    CONSTRAINT {table.object_name('PAUSED_PK')} PRIMARY KEY (MICROSERVICE, ACTION)\n"
        ")"
    )
    statements.append(
        f"CREATE TABLE {table.qualified_object('SESSIONS')} (\n"
        "    SESSION_ID        VARCHAR2(128 CHAR) NOT NULL,\n"
        "    UNTIL_AT          TIMESTAMP(6) NOT NULL,\n"
        f"    CONSTRAINT {table.object_name('SESSIONS_PK')} PRIMARY KEY (SESSION_ID)\n"
        ")"
    )
    # The closed attempts (a ring of N slots per job); purging a job deletes its attempts.
    statements.append(
        f"CREATE TABLE {table.qualified_object('ATTEMPTS')} (\n"
        "    JOB_ID            NUMBER(19) NOT NULL,\n"
        "    SLOT              NUMBER(5) NOT NULL,\n"
        "    ATTEMPT_NO        NUMBER(10) NOT NULL,\n"
        "    WORKER_ID         VARCHAR2(200 CHAR),\n"
        "    STARTED_AT        TIMESTAMP(6),\n"
        "    FINISHED_AT       TIMESTAMP(6),\n"
        "    OUTCOME           VARCHAR2(16 CHAR) NOT NULL,\n"
        "    ERROR_CODE        VARCHAR2(64 CHAR),\n"
        "    ERROR_MESSAGE     CLOB,\n"
        f"    CONSTRAINT {table.object_name('ATTEMPTS_PK')} PRIMARY KEY (JOB_ID, SLOT),\n"
        f"    CONSTRAINT {table.object_name('ATTEMPTS_FK')} FOREIGN KEY (JOB_ID)\n"
        f"        REFERENCES {t} (ID) ON DELETE CASCADE\n"
        ")"
    )
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
