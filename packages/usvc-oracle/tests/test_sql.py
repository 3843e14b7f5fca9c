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

TABLES = ["MICRO_SVC", "app.micro_svc"]
_RETURNING = re.compile(r"\bRETURNING\b(?P<exprs>.+?)\bINTO\b(?P<binds>.+)$", re.S | re.I)
_ALLOWED_STRINGS = {s.value for s in JobStatus} | {"SECOND"}
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


def _clauses(tree: exp.Expression) -> list[exp.Expression]:
    """WHERE, ORDER BY and GROUP BY clauses of every query block in the tree."""
    found: list[exp.Expression] = []
    for node in tree.find_all(exp.Select, exp.Update, exp.Delete):
        found += [node.args[k] for k in ("where", "order", "group") if node.args.get(k)]
    return found


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
    for sql in ddl_statements(TableName(table.table))[1:]:
        tree, _ = parse(sql)
        index = tree.this
        assert isinstance(index, exp.Index)
        columns = [(o.this, bool(o.args.get("desc"))) for o in tree.find_all(exp.Ordered)]
        per_index[index.name] = [(e.sql(dialect="oracle"), desc) for e, desc in columns]
        keys += [e for e, _ in columns]
    return keys, per_index


def lint(sql: str, keys: list[exp.Case]) -> exp.Expression:
    """The note's rules for runtime statements; raises AssertionError naming the broken one."""
    tree, into = parse(sql)
    upper = sql.upper()
    assert ";" not in sql, "no statement terminator in driver SQL"
    # FOR UPDATE never with FETCH FIRST/ROWNUM (ORA-02014, or a starving SKIP LOCKED).
    for select in tree.find_all(exp.Select):
        if select.args.get("locks"):
            assert not select.args.get("limit"), "FETCH FIRST with FOR UPDATE (ORA-02014)"
            assert not select.args.get("offset")
            assert "ROWNUM" not in upper, "ROWNUM with FOR UPDATE skips before it limits"
            assert upper.rstrip().endswith("FOR UPDATE SKIP LOCKED")
    # Binds for all values: literals are status names, 'SECOND', 0 and 1 only.
    for lit in tree.find_all(exp.Literal):
        if lit.find_ancestor(exp.DataType):
            continue  # TIMESTAMP(6)
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
        for case in _status_cases(clause):
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
    assert len(statements) == 20
    for name, sql in statements.items():
        tree = lint(sql, keys)
        tables = {
            exp.table_(t.name, db=t.db or None, quoted=True).sql(dialect="oracle")
            for t in tree.find_all(exp.Table)
        }
        assert tables == {table.quoted}, (name, tables)


def test_every_ddl_statement_parses(table: TableName) -> None:
    """CREATE TABLE and CREATE INDEX parse; sqlglot reads a schema-qualified index name only
    as an opaque command, so that one part is checked by hand and the rest parsed."""
    statements = ddl_statements(table)
    assert [s.split("(")[0].split()[:3] for s in statements] == [
        ["CREATE", "TABLE", table.quoted],
        ["CREATE", "INDEX", table.qualified_object("READY_IX")],
        ["CREATE", "INDEX", table.qualified_object("LEASE_IX")],
        ["CREATE", "INDEX", table.qualified_object("DONE_IX")],
        ["CREATE", "UNIQUE", "INDEX"],
    ]
    for statement in statements:
        assert ";" not in statement
        sql = statement
        if table.schema and "INDEX" in statement.split("(", maxsplit=1)[0]:
            prefix = f'"{table.schema}".'
            assert statement.count(prefix) == 2  # the index and its table live in one schema
            sql = statement.replace(prefix, "", 1)
        tree, _ = parse(sql)
        assert isinstance(tree, exp.Create)


def test_claim_follows_the_ready_index(table: TableName) -> None:
    """The claim filters on the Ready index's leading keys and orders by the rest of it,
    in the index's directions, so Oracle can stop after n rows without sorting."""
    _, per_index = index_keys(table)
    ready = per_index[f"{table.table}_READY_IX"]
    tree = lint(Statements.render(table).claim_lock, index_keys(table)[0])
    order = [(o.this.sql(dialect="oracle"), bool(o.args.get("desc"))) for o in tree.args["order"]]
    assert order == ready[1:]
    where = {c.sql(dialect="oracle") for c in _status_cases(tree.args["where"])}
    assert where == {ready[0][0], ready[2][0]}


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("claim_lock", "READY_IX"),
        ("reclaim_lock", "LEASE_IX"),
        ("purge", "DONE_IX"),
        ("idempotency_holder", "IDEM_UX"),
    ],
)
def test_queries_use_their_index(table: TableName, name: str, index: str) -> None:
    """Each hot query filters on its own index's leading key."""
    _, per_index = index_keys(table)
    tree, _ = parse(Statements.render(table).as_dict()[name])
    where = {c.sql(dialect="oracle") for c in _status_cases(tree.args["where"])}
    assert per_index[f"{table.table}_{index}"][0][0] in where


def test_stats_counts_from_the_indexes(table: TableName) -> None:
    """Each branch of the stats query reads one index's rows (no full scan of the table)."""
    _, per_index = index_keys(table)
    tree, _ = parse(Statements.render(table).stats)
    branches = list(tree.find_all(exp.Select, bfs=False))
    assert len(branches) == 3
    leading = [per_index[f"{table.table}_{i}"][0][0] for i in ("READY_IX", "LEASE_IX", "DONE_IX")]
    for branch, key in zip(branches, leading, strict=True):
        where = branch.args["where"]
        assert {c.sql(dialect="oracle") for c in _status_cases(where)} == {key}


def test_index_hint_names_the_index() -> None:
    """The claim's index hint names the Ready index without a schema (Oracle's hint syntax)."""
    sql = Statements.render(TableName.parse("app.t")).claim_lock
    assert '/*+ INDEX(q "T_READY_IX") */' in sql


class TestTheLintCatches:
    """The lint fails on each mistake it exists for."""

    keys = index_keys(TableName.parse("T"))[0]
    ready_ms = "CASE WHEN STATUS = 'Ready' THEN MICROSERVICE END"

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
