"""Every SQL text the Oracle queue can send, checked offline with sqlglot's Oracle dialect.

sqlglot is permissive (it accepts ``FETCH FIRST ... FOR UPDATE``, which Oracle rejects with
ORA-02014), so a parse is not enough: each statement also passes lint rules for the mistakes
that matter here. The lint itself is shown to catch each mistake on a bad statement.
"""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel
from usvc_core.jobs import JobStatus
from usvc_oracle import Statements, TableName, ddl_statements
from usvc_oracle.sql import (
    COLUMNS_QUERY,
    DESCENDING_INDEXES_QUERY,
    IDENTITY_OPTIONS,
    INDEX_ATTRIBUTES,
    ROW_LOCK_WAIT_SECONDS,
    TABLE_ATTRIBUTES,
    upgrade_statements,
)

TABLES = ["MICRO_SVC", "app.micro_svc"]
_RETURNING = re.compile(r"\bRETURNING\b(?P<exprs>.+?)\bINTO\b(?P<binds>.+)$", re.S | re.I)
_ALLOWED_STRINGS = {s.value for s in JobStatus} | {"SECOND", "MI"}
#: Statements on another table than the queue's: the max_running limits, and DUAL.
_OTHER_TABLE = {
    "limit_lock": "LIMITS",
    "limit_insert": "LIMITS",
    "limits_probe": "LIMITS",
    "db_now": "DUAL",
    "heartbeat": "WORKERS",
    "remove_worker": "WORKERS",
    "list_workers": "WORKERS",
    "forget_gone": "WORKERS",
    "workers_probe": "WORKERS",
    "pause": "PAUSED",
    "resume": "PAUSED",
    "paused": "PAUSED",
    "paused_probe": "PAUSED",
    "forget_sessions": "SESSIONS",
    "revoke_session": "SESSIONS",
    "session_revoked": "SESSIONS",
    "attempts": "ATTEMPTS",
    "attempts_probe": "ATTEMPTS",
}
#: Statements on the queue table and another one.
_TWO_TABLES = {
    "claim_lock": "PAUSED",  # a paused action is stepped over
    "claim_lock_except": "PAUSED",
    "gone_lock": "WORKERS",  # the jobs of gone workers
    # a transition's closed attempt, copied from the job's row
    "history_retry": "ATTEMPTS",
    "history_release": "ATTEMPTS",
    "history_reclaim": "ATTEMPTS",
    "history_retry_failed": "ATTEMPTS",
}
_ALLOWED_NUMBERS = {"0", "1"}


def parse(sql: str) -> tuple[exp.Expression, set[str]]:
    """Parse one statement; sqlglot cannot read a multi-column ``RETURNING ... INTO``, so
    that tail is checked here and stripped. Returns the tree and the INTO bind names."""
    body, into = sql, set[str]()
    if m := _RETURNING.search(sql):
        body = sql[: m.start()].rstrip()
        exprs = [e.strip() for e in m["exprs"].split(",")]
        binds = [b.strip() for b in m["binds"].split(",")]
        assert len(exprs) == len(binds), "RETURNING and INTO lists differ in length"
        assert all(re.fullmatch(r"[A-Z_]+", e) for e in exprs), exprs
        assert all(re.fullmatch(r":[a-z]\w*", b) for b in binds), binds
        into = {b[1:] for b in binds}
    trees = sqlglot.parse(body, read="oracle", error_level=ErrorLevel.RAISE)
    assert len(trees) == 1, "exactly one statement"
    tree = trees[0]
    assert tree is not None
    assert not isinstance(tree, exp.Command), "sqlglot did not understand the statement"
    return tree, into


def strip_physical(sql: str) -> str:
    """The DDL without its physical attributes, which sqlglot cannot parse: each must be
    exactly the shipped one, in its place (table: identity cache and PCTFREE/INITRANS at
    the end; index: INITRANS, optionally ONLINE, at the end)."""
    if sql.startswith("CREATE TABLE") and "IDENTITY" in sql:
        assert f"AS IDENTITY {IDENTITY_OPTIONS}," in sql
        sql = sql.replace(f" {IDENTITY_OPTIONS}", "", 1)
        assert sql.endswith(f") {TABLE_ATTRIBUTES}")
        return sql.removesuffix(f" {TABLE_ATTRIBUTES}")
    if "INDEX" in sql.split("(", maxsplit=1)[0]:
        for tail in (f" {INDEX_ATTRIBUTES} ONLINE", f" {INDEX_ATTRIBUTES}"):
            if sql.endswith(tail):
                return sql.removesuffix(tail)
        raise AssertionError(f"index without {INDEX_ATTRIBUTES}: {sql}")
    return sql


def _clauses(tree: exp.Expression) -> list[exp.Expression]:
    """WHERE, ORDER BY and GROUP BY clauses of every query block in the tree."""
    found: list[exp.Expression] = []
    for node in tree.find_all(exp.Select, exp.Update, exp.Delete):
        found += [node.args[k] for k in ("where", "order", "group") if node.args.get(k)]
    return found


def _cases(node: exp.Expression) -> list[exp.Case]:
    """Every CASE expression: in a WHERE, ORDER BY or GROUP BY each must be an index key."""
    return list(node.find_all(exp.Case))


def _status_cases(node: exp.Expression) -> list[exp.Case]:
    """CASE expressions whose WHEN tests STATUS: the function-based index keys."""
    return [
        case
        for case in node.find_all(exp.Case)
        if any(c.name == "STATUS" for c in case.args["ifs"][0].this.find_all(exp.Column))
    ]


def index_keys(table: TableName) -> tuple[list[exp.Case], dict[str, list[tuple[str, bool]]]]:
    """The index expressions from the shipped DDL, and each index's (key, descending) list."""
    keys: list[exp.Case] = []
    per_index: dict[str, list[tuple[str, bool]]] = {}
    for sql in ddl_statements(TableName(table.table)):
        if not sql.startswith(("CREATE INDEX", "CREATE UNIQUE INDEX")):
            continue
        tree, _ = parse(strip_physical(sql))
        index = tree.this
        assert isinstance(index, exp.Index)
        columns = [(o.this, bool(o.args.get("desc"))) for o in tree.find_all(exp.Ordered)]
        per_index[index.name] = [(e.sql(dialect="oracle"), desc) for e, desc in columns]
        keys += [e for e, _ in columns if isinstance(e, exp.Case)]
    return keys, per_index


def lint(sql: str, keys: list[exp.Case]) -> exp.Expression:
    """The note's rules for runtime statements; raises AssertionError naming the broken one."""
    tree, into = parse(sql)
    upper = sql.upper()
    assert ";" not in sql, "no statement terminator in driver SQL"
    # FOR UPDATE never with FETCH FIRST/ROWNUM (ORA-02014, or a starving SKIP LOCKED), and
    # never an unbounded wait for another session's row lock.
    for select in tree.find_all(exp.Select):
        if select.args.get("locks"):
            assert not select.args.get("limit"), "FETCH FIRST with FOR UPDATE (ORA-02014)"
            assert not select.args.get("offset")
            assert "ROWNUM" not in upper, "ROWNUM with FOR UPDATE skips before it limits"
            assert upper.rstrip().endswith(
                ("FOR UPDATE SKIP LOCKED", f"FOR UPDATE WAIT {ROW_LOCK_WAIT_SECONDS}")
            ), "a FOR UPDATE that may wait unboundedly (or longer than the row-lock wait)"
    # Binds for all values: literals are status names, 'SECOND', 'MI', 0 and 1 only.
    for lit in tree.find_all(exp.Literal):
        if lit.find_ancestor(exp.DataType, exp.Lock):
            continue  # TIMESTAMP(6), FOR UPDATE WAIT n (checked above)
        allowed = _ALLOWED_STRINGS if lit.is_string else _ALLOWED_NUMBERS
        assert lit.this in allowed, f"literal {lit.sql()} should be a bind variable"
    binds = {p.name for p in tree.find_all(exp.Placeholder)}
    assert not binds & into, "DPY-2048: a bind may not appear before and after RETURNING"
    # Times come from the database clock, as UTC TIMESTAMPs.
    for banned in (
        "CURRENT_TIMESTAMP",
        "LOCALTIMESTAMP",
        "SYSDATE",
        "AT TIME ZONE",
        "CURRENT_DATE",
    ):
        assert banned not in upper, f"{banned}: use SYS_EXTRACT_UTC(SYSTIMESTAMP)"
    for now in tree.find_all(exp.Systimestamp):
        parent = now.parent
        assert isinstance(parent, exp.Anonymous), "SYSTIMESTAMP outside SYS_EXTRACT_UTC"
        assert parent.name.upper() == "SYS_EXTRACT_UTC"
    # Index expressions repeated exactly, so the function-based indexes can serve the query.
    for clause in _clauses(tree):
        for case in _cases(clause):
            assert any(case == key for key in keys), (
                f"{case.sql(dialect='oracle')} matches no index expression"
            )
    return tree


@pytest.fixture(params=TABLES)
def table(request: pytest.FixtureRequest) -> TableName:
    return TableName.parse(request.param)


def test_every_runtime_statement_parses_and_passes_the_lint(table: TableName) -> None:
    """All runtime statements, for TABLE and SCHEMA.TABLE, parse and pass every rule."""
    keys, _ = index_keys(table)
    statements = Statements.render(table).as_dict()
    assert len(statements) == 66
    for name, sql in statements.items():
        tree = lint(sql, keys)
        tables = {
            exp.table_(t.name, db=t.db or None, quoted=True).sql(dialect="oracle")
            for t in tree.find_all(exp.Table)
        }
        other = _OTHER_TABLE.get(name)
        if name in ("heartbeat", "revoke_session"):
            assert tables == {table.qualified_object(other or ""), '"DUAL"'}, (name, tables)
        elif name in _TWO_TABLES:
            expected = {table.quoted, table.qualified_object(_TWO_TABLES[name])}
            assert tables == expected, (name, tables)
        elif other == "DUAL":
            assert tables == {'"DUAL"'}, (name, tables)
        elif other is not None:
            assert tables == {table.qualified_object(other)}, (name, tables)
        else:
            assert tables == {table.quoted}, (name, tables)


def test_every_ddl_statement_parses(table: TableName) -> None:
    """CREATE TABLE and CREATE INDEX parse; sqlglot reads a schema-qualified index name only
    as an opaque command, so that one part is checked by hand and the rest parsed."""
    statements = ddl_statements(table)
    assert [s.split("(")[0].split()[:3] for s in statements] == [
        ["CREATE", "TABLE", table.quoted],
        ["CREATE", "INDEX", table.qualified_object("CLAIM_IX")],
        ["CREATE", "INDEX", table.qualified_object("DELAY_IX")],
        ["CREATE", "INDEX", table.qualified_object("LEASED_IX")],
        ["CREATE", "INDEX", table.qualified_object("FINISHED_IX")],
        ["CREATE", "INDEX", table.qualified_object("FAILED_IX")],
        ["CREATE", "UNIQUE", "INDEX"],
        ["CREATE", "UNIQUE", "INDEX"],
        ["CREATE", "INDEX", table.qualified_object("LIST_IX")],
        ["CREATE", "INDEX", table.qualified_object("KEYS_IX")],
        ["CREATE", "TABLE", table.qualified_object("WORKERS")],
        ["CREATE", "TABLE", table.qualified_object("PAUSED")],
        ["CREATE", "TABLE", table.qualified_object("SESSIONS")],
        ["CREATE", "TABLE", table.qualified_object("ATTEMPTS")],
        ["CREATE", "TABLE", table.qualified_object("LIMITS")],
    ]
    online = ddl_statements(table, online=True)
    assert [s.endswith(" ONLINE") for s in online] == [False] + [True] * 9 + [False] * 5
    for statement in [*statements, *online[1:-5]]:
        assert ";" not in statement
        sql = strip_physical(statement)
        if table.schema and "INDEX" in statement.split("(", maxsplit=1)[0]:
            prefix = f'"{table.schema}".'
            assert statement.count(prefix) == 2  # the index and its table live in one schema
            sql = sql.replace(prefix, "", 1)
        tree, _ = parse(sql)
        assert isinstance(tree, exp.Create)


def test_upgrade_and_dictionary_statements_parse(table: TableName) -> None:
    """The ALTER TABLE ... ADD of an older table's missing columns, and the dictionary
    queries `check` and `apply` read the columns and DESC index keys with, parse as SQL."""
    alters = upgrade_statements(table, {"UNIQUE_KEY", "CANCEL_REQUESTED", "DELAYED"})
    assert len(alters) == 3
    for sql in [*alters, COLUMNS_QUERY, DESCENDING_INDEXES_QUERY]:
        tree, _ = parse(sql)
        assert isinstance(tree, exp.Alter | exp.Select)
    assert upgrade_statements(table, set()) == []


def test_no_index_key_is_descending(table: TableName) -> None:
    """A DESC key is stored as SYS_OP_DESCEND(expr), which is never NULL: such an index
    would hold every row of the table, not only the ones its CASE selects."""
    _, per_index = index_keys(table)
    assert per_index
    for name, keys in per_index.items():
        assert not [k for k, desc in keys if desc], name


@pytest.mark.parametrize("name", ["claim_lock", "claim_lock_except"])
def test_claim_follows_the_claim_index(table: TableName, name: str) -> None:
    """The claim filters on the claim index's leading key and orders by the next three,
    in the index's directions (all ascending: the priority key is negated), so Oracle can
    stop after n rows without sorting; the skipped actions are tested on the index's ACTION
    key, so skipping a full action reads no table row."""
    _, per_index = index_keys(table)
    claim = per_index[f"{table.table}_CLAIM_IX"]
    tree = lint(Statements.render(table).as_dict()[name], index_keys(table)[0])
    order = [(o.this.sql(dialect="oracle"), bool(o.args.get("desc"))) for o in tree.args["order"]]
    assert order == claim[1:4]
    assert "-PRIORITY" in order[0][0]
    where = {c.sql(dialect="oracle") for c in _status_cases(tree.args["where"])}
    expected = {claim[0][0], claim[2][0]} | ({claim[4][0]} if name.endswith("except") else set())
    assert where == expected
    columns = {c.name for c in tree.args["where"].find_all(exp.Column)}
    assert columns <= {"STATUS", "DELAYED", "MICROSERVICE", "RUN_AT", "ACTION"}


def test_the_claim_index_holds_due_jobs_only(table: TableName) -> None:
    """Issue 22 item 6: a job written with a future RUN_AT (enqueue with a delay, a retry's
    backoff) gets DELAYED = 1, which keeps it out of the claim index (whose keys are NULL
    unless DELAYED IS NULL) and puts it in the delay index; the promotion reads the delay
    index's due range only (RUN_AT <= now on its second key, after the service) in key
    order, and clears DELAYED. So no claim reads a future-dated entry."""
    _, per_index = index_keys(table)
    for key, _ in per_index[f"{table.table}_CLAIM_IX"]:
        assert key.startswith("CASE WHEN STATUS = 'Ready' AND DELAYED IS NULL THEN")
    for key, _ in per_index[f"{table.table}_DELAY_IX"]:
        assert key.startswith("CASE WHEN STATUS = 'Ready' AND DELAYED = 1 THEN")
    sql = Statements.render(table)
    for text in (sql.enqueue, sql.retry):
        assert "RUN_AT" in text and "THEN 1 END" in text
        assert re.search(r"DELAYED = CASE WHEN .*:delay_seconds > 0 THEN 1 END", text) or (
            "CASE WHEN :delay_seconds > 0 THEN 1 END" in text
        )
    delay = per_index[f"{table.table}_DELAY_IX"]
    tree = lint(sql.promote_lock, index_keys(table)[0])
    order = [(o.this.sql(dialect="oracle"), bool(o.args.get("desc"))) for o in tree.args["order"]]
    assert order == delay[1:3]
    conjuncts = list(tree.args["where"].this.flatten())
    assert conjuncts[0].sql(dialect="oracle") == f"{delay[0][0]} = :microservice"
    assert (
        isinstance(conjuncts[1], exp.LTE)
        and conjuncts[1].this.sql(dialect="oracle") == (delay[1][0])
    )
    assert "DELAYED = NULL" in sql.promote and "DELAYED = 1" in sql.promote
    assert "DELAYED = NULL" in sql.retry_failed


#: Queries that must be answered from one index alone (no table access), and that index.
INDEX_ONLY = {
    "stats": {"CLAIM_IX", "DELAY_IX", "LEASED_IX", "FINISHED_IX"},
    "running_counts": {"LEASED_IX"},
    "limit_waiting": {"CLAIM_IX"},
    "activity_counts": {"CLAIM_IX", "DELAY_IX", "LEASED_IX", "FINISHED_IX"},
    "activity_minutes": {"FINISHED_IX"},
    "filter_failed": {"FAILED_IX"},
}


@pytest.mark.parametrize("name", sorted(INDEX_ONLY))
def test_index_only_queries(table: TableName, name: str) -> None:
    """Issue 22 item 7: each query block reads only expressions that are keys of one
    index, filtered on that index's leading key, so Oracle answers it from the index
    (every other row of the table has NULL keys and is not in it)."""
    _, per_index = index_keys(table)
    tree = lint(Statements.render(table).as_dict()[name], index_keys(table)[0])
    used: set[str] = set()
    for block in tree.find_all(exp.Select):
        keys = [
            c.sql(dialect="oracle")
            for c in block.find_all(exp.Case)
            if any(c.sql(dialect="oracle") == k for ks in per_index.values() for k, _ in ks)
        ]
        for column in block.find_all(exp.Column):
            covering = column.find_ancestor(exp.Case)
            while covering is not None and covering.sql(dialect="oracle") not in keys:
                covering = covering.find_ancestor(exp.Case)
            assert covering is not None, f"{name}: {column.sql()} is read from the table"
        homes = {
            index.removeprefix(f"{table.table}_")
            for index, ks in per_index.items()
            if set(keys) <= {k for k, _ in ks}
        }
        assert homes, f"{name}: no single index holds {keys}"
        where = block.args["where"]
        leading = {per_index[f"{table.table}_{h}"][0][0] for h in homes}
        assert {c.sql(dialect="oracle") for c in where.find_all(exp.Case)} & leading
        used |= homes
    assert used == INDEX_ONLY[name]


def test_the_next_page_seeks(table: TableName) -> None:
    """Issue 22 item 7: the next page's start is a range predicate on LIST_IX (service,
    CREATED_AT <= the cursor's), not an OR the optimizer can only filter with; the tie on
    CREATED_AT is settled among the entries of that one timestamp."""
    sql = Statements.render(table)
    tree, _ = parse(sql.list_jobs_after)
    conjuncts = [c.sql(dialect="oracle") for c in tree.args["where"].this.flatten()]
    assert conjuncts[:2] == ["MICROSERVICE = :microservice", "CREATED_AT <= :after_created"]
    assert "after_id" not in sql.list_jobs and "after_created" not in sql.list_jobs
    order = [(o.this.sql(), bool(o.args.get("desc"))) for o in tree.args["order"]]
    assert order == [("CREATED_AT", True), ("ID", True)]  # LIST_IX read backwards: no sort


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("claim_lock", "CLAIM_IX"),
        ("claim_lock_except", "CLAIM_IX"),
        ("promote_lock", "DELAY_IX"),
        ("reclaim_lock", "LEASED_IX"),
        ("running_counts", "LEASED_IX"),
        ("purge_lock", "FINISHED_IX"),
        ("activity_minutes", "FINISHED_IX"),
        ("filter_failed", "FAILED_IX"),
        ("idempotency_holder", "IDEM_UX"),
        ("unique_holder", "UNIQ_UX"),
        ("list_jobs", "LIST_IX"),
        ("list_jobs_after", "LIST_IX"),
        ("find_by_unique", "UNIQ_UX"),
        ("find_by_idempotency", "KEYS_IX"),
        ("limit_waiting", "CLAIM_IX"),
    ],
)
def test_queries_use_their_index(table: TableName, name: str, index: str) -> None:
    """Each query that reads many rows filters on its own index's leading key."""
    _, per_index = index_keys(table)
    tree, _ = parse(Statements.render(table).as_dict()[name])
    where = {c.sql(dialect="oracle") for c in tree.args["where"].find_all(exp.Case, exp.Column)}
    assert per_index[f"{table.table}_{index}"][0][0] in where


def test_stats_counts_from_the_indexes(table: TableName) -> None:
    """Each branch of the stats query reads one index's rows (no full scan of the table);
    the Ready age is the oldest due RUN_AT, not the oldest CREATED_AT."""
    _, per_index = index_keys(table)
    sql = Statements.render(table).stats
    tree, _ = parse(sql)
    branches = list(tree.find_all(exp.Select, bfs=False))
    assert len(branches) == 4
    leading = [
        per_index[f"{table.table}_{i}"][0][0]
        for i in ("CLAIM_IX", "DELAY_IX", "LEASED_IX", "FINISHED_IX")
    ]
    for branch, key in zip(branches, leading, strict=True):
        where = branch.args["where"]
        assert {c.sql(dialect="oracle") for c in _status_cases(where)} == {key}
    assert "CREATED_AT" not in sql


def test_the_bounded_stats_stop_each_count_on_its_index(table: TableName) -> None:
    """``stats_upto`` (the worker's sample): the claim index's branch is the exact query's
    (its oldest due RUN_AT needs the whole range anyway); every other count reads at most
    :count_limit entries (FETCH FIRST) of one index, filtered on its leading key, reading
    no column from the table; the deferred jobs' oldest due one is a range of DELAY_IX."""
    _, per_index = index_keys(table)
    sql = Statements.render(table)
    assert sql.stats_upto.startswith(sql.stats.split("UNION ALL")[0])
    tree = lint(sql.stats_upto, index_keys(table)[0])
    leading = {
        index.removeprefix(f"{table.table}_"): keys[0][0] for index, keys in per_index.items()
    }
    bounded = [s for s in tree.find_all(exp.Select) if isinstance(s.args.get("limit"), exp.Fetch)]
    homes = []
    for block in bounded:
        assert block.args["limit"].args["count"].sql() == ":count_limit"
        where = {c.sql(dialect="oracle") for c in block.args["where"].find_all(exp.Case)}
        [home] = [name for name, key in leading.items() if key in where]
        homes.append(home)
        for column in block.find_all(exp.Column):
            assert column.find_ancestor(exp.Case) is not None, f"{column.sql()} read from the table"
    assert sorted(homes) == ["DELAY_IX", "DELAY_IX", "FAILED_IX", "FINISHED_IX"]
    assert "CREATED_AT" not in sql.stats_upto


def test_index_hint_names_the_index() -> None:
    """The claim's index hint names the claim index without a schema (Oracle's hint syntax)."""
    sql = Statements.render(TableName.parse("app.t")).claim_lock
    assert '/*+ INDEX(q "T_CLAIM_IX") */' in sql


def test_ddl_sizes_the_table_for_a_busy_queue(table: TableName) -> None:
    """Issue 22 item 8: identity CACHE 1000 NOORDER (no sequence round trip per batch, no
    RAC ordering), PCTFREE 30 for rows that grow after the insert, INITRANS for many
    concurrent transactions per block."""
    create, *indexes, _, _, _, _, _ = ddl_statements(table)
    assert "GENERATED BY DEFAULT ON NULL AS IDENTITY (CACHE 1000 NOORDER)," in create
    assert create.endswith(") PCTFREE 30 INITRANS 8")
    assert all(i.endswith(" INITRANS 16") for i in indexes)


class TestTheLintCatches:
    """The lint fails on each mistake it exists for."""

    keys = index_keys(TableName.parse("T"))[0]
    ready_ms = "CASE WHEN STATUS = 'Ready' AND DELAYED IS NULL THEN MICROSERVICE END"

    @pytest.mark.parametrize(
        ("sql", "why"),
        [
            (
                'SELECT ID FROM "T" ORDER BY ID FETCH FIRST 5 ROWS ONLY FOR UPDATE SKIP LOCKED',
                "ORA-02014",
            ),
            ('SELECT ID FROM "T" WHERE ROWNUM <= :n FOR UPDATE SKIP LOCKED', "ROWNUM"),
            (f"SELECT ID FROM \"T\" WHERE {ready_ms} = 'svc'", "bind variable"),
            ('SELECT ID FROM "T" WHERE PRIORITY > 5', "bind variable"),
            ("SELECT ID FROM \"T\" WHERE CASE WHEN STATUS = 'Ready' THEN ACTION END = :a", "index"),
            (
                "SELECT ID FROM \"T\" WHERE CASE WHEN STATUS IN ('Assigned') "
                "THEN MICROSERVICE END = :m",
                "index",
            ),
            ('UPDATE "T" SET RUN_AT = SYSTIMESTAMP WHERE ID = :id', "SYS_EXTRACT_UTC"),
            ('UPDATE "T" SET RUN_AT = SYSDATE WHERE ID = :id', "SYSDATE"),
            (
                'UPDATE "T" SET TOKEN = :id WHERE ID = :x RETURNING ID INTO :id',
                "DPY-2048",
            ),
            ('UPDATE "T" SET TOKEN = :t WHERE ID = :x RETURNING ID, TOKEN INTO :o', "length"),
            ('SELECT ID FROM "T" WHERE ID = :id;', "terminator"),
            ('SELECT ID FROM "T" WHERE ID = :id FOR UPDATE', "unboundedly"),
            ('SELECT ID FROM "T" WHERE ID = :id FOR UPDATE WAIT 600', "unboundedly"),
            (
                'SELECT ID FROM "T" WHERE CASE WHEN UNIQUE_KEY IS NULL THEN MICROSERVICE END = :m',
                "index",
            ),
        ],
    )
    def test_bad_statement(self, sql: str, why: str) -> None:
        """A statement breaking one rule is refused with that rule's reason."""
        with pytest.raises(AssertionError, match=why):
            lint(sql, self.keys)

    def test_two_statements(self) -> None:
        """Two statements in one text are refused."""
        with pytest.raises(AssertionError, match="exactly one statement"):
            parse('SELECT ID FROM "T"; DROP TABLE "T"')


_HISTORY = ("history_retry", "history_release", "history_reclaim", "history_retry_failed")


@pytest.mark.parametrize("name", _HISTORY)
def test_a_history_merge_fills_one_ring_slot(table: TableName, name: str) -> None:
    """Each closed attempt is one MERGE into <table>_ATTEMPTS keyed by (JOB_ID, SLOT) with
    SLOT = MOD(ATTEMPT_NO, :keep); neither key column is updated when matched (Oracle
    refuses an update of a column of the ON clause, ORA-38104), and the insert writes the
    same slot as the ON clause looks for."""
    tree, _ = parse(getattr(Statements.render(table), name))
    assert isinstance(tree, exp.Merge)
    assert tree.this.name == f"{table.table}_ATTEMPTS"
    on = tree.args["on"].sql(dialect="oracle")
    assert on == "(a.JOB_ID = j.ID AND a.SLOT = MOD(j.ATTEMPT_NO, :keep))"
    matched, not_matched = tree.args["whens"].expressions
    updated = {e.this.name for e in matched.args["then"].expressions}
    assert not updated & {"JOB_ID", "SLOT"}
    assert updated == {
        "ATTEMPT_NO",
        "WORKER_ID",
        "STARTED_AT",
        "FINISHED_AT",
        "OUTCOME",
        "ERROR_CODE",
        "ERROR_MESSAGE",
    }
    insert = not_matched.args["then"]
    values = [v.sql(dialect="oracle") for v in insert.expression.expressions]
    assert values[:2] == ["j.ID", "MOD(j.ATTEMPT_NO, :keep)"]
    # Only rows that still have their current attempt (STARTED_AT) are copied.
    assert "NOT STARTED_AT IS NULL" in tree.args["using"].sql(dialect="oracle")


def test_the_attempts_table_cascades_from_the_queue_table(table: TableName) -> None:
    """A purge deletes a job's attempts with it (ON DELETE CASCADE on a foreign key whose
    column leads the primary key, so the child lookup is an index probe)."""
    [ddl] = [s for s in ddl_statements(table) if f'{table.table}_ATTEMPTS"' in s.split("(")[0]]
    assert "PRIMARY KEY (JOB_ID, SLOT)" in ddl
    assert f"FOREIGN KEY (JOB_ID)\n        REFERENCES {table.quoted} (ID) ON DELETE CASCADE" in ddl
    tree, _ = parse(ddl)
    assert isinstance(tree, exp.Create)
