"""The SQL guards, attacked: each hostile query must be refused before anything runs, naming what and where;
honest queries must pass; the threshold rewrite must suppress small groups when the SQL actually runs."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from sidecars.analytics.documents import parse_dataset
from sidecars.analytics.sqlguard import (
    MAX_SQL_CHARS,
    ROW_ID_COLUMN,
    SqlRefused,
    check_segment,
    with_aggregation_threshold,
)

from .test_documents import dataset_doc


def dataset(name: str, mode: str, columns: list[str], allowed: list[str], threshold: int | None = None):
    return parse_dataset(json.dumps(dataset_doc(
        name=name, accessMode=mode, aggregationThreshold=threshold, allowedFields=allowed,
        schema=[{"name": c, "type": "bigint"} for c in columns])))


#: northwind shares rows but not its customers' emails; woodgrove shares only aggregates, never its ssn
VIEWS = {
    "nw": dataset("northwind", "row", ["id", "amount", "email"], ["id", "amount"]),
    "wg": dataset("woodgrove", "aggregate", ["id", "spend", "ssn"], ["id", "spend"], threshold=3),
}


def refused(sql: str) -> str:
    with pytest.raises(SqlRefused) as caught:
        check_segment(sql, VIEWS)
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("sql", [
    "SELECT id, amount FROM nw",
    "SELECT * FROM nw WHERE amount > 10 ORDER BY id LIMIT 5",
    "select Id, `AMOUNT` from NW",
    "SELECT nw.amount, SUM(wg.spend) AS total, COUNT(*) AS n FROM nw JOIN wg ON nw.id = wg.id GROUP BY nw.amount",
    "WITH big AS (SELECT id FROM nw WHERE amount > 100) SELECT COUNT(*) FROM big JOIN wg ON big.id = wg.id",
    "SELECT COUNT(DISTINCT wg.id), AVG(wg.spend) FROM wg",
    "SELECT COUNT(*) AS n FROM wg GROUP BY wg.spend",
    "SELECT nw.amount, SUM(SUM(wg.spend)) OVER () AS running FROM nw JOIN wg ON nw.id = wg.id GROUP BY nw.amount",
    "SELECT id FROM nw UNION ALL SELECT amount FROM nw",
])
def test_honest_queries_pass(sql):
    check_segment(sql, VIEWS)


@pytest.mark.parametrize(("sql", "reason"), [
    # not a single SELECT
    ("SELECT id FROM nw; DROP TABLE nw", "must be one statement, not 2"),
    ("INSERT INTO nw SELECT * FROM nw", "must be a SELECT, not INSERT"),
    ("CREATE TEMPORARY VIEW v AS SELECT * FROM nw", "must be a SELECT, not CREATE"),
    ("CACHE TABLE nw", "must be a SELECT"),
    ("SET spark.sql.ansi.enabled=false", "must be a SELECT"),
    ("VALUES (1)", "must be a SELECT"),
    ("SELECT id FROM", "does not parse"),
    ("SELECT TRANSFORM(id) USING 'sh -c id' FROM nw", "QUERYTRANSFORM is not allowed"),
    # code and files the room does not offer
    ("SELECT reflect('java.lang.Runtime', 'getRuntime') FROM nw", "function reflect() is not offered"),
    ("SELECT java_method('java.lang.System', 'getenv', 'HOME')", "function java_method() is not offered"),
    ("SELECT my_udf(id) FROM nw", "function my_udf() is not offered"),
    ("SELECT input_file_name() FROM nw", "function input_file_name() is not offered"),
    ("SELECT * FROM read_files('/mnt/remote/wg')", "table function READ_FILES('/mnt/remote/wg') is not allowed"),
    ("SELECT * FROM csv.`/mnt/remote/woodgrove/part-0.csv`",
     "table csv.`/mnt/remote/woodgrove/part-0.csv` is not allowed"),
    ("SELECT * FROM parquet.`/etc`", "is not allowed"),
    ("SELECT * FROM default.nw", "table default.nw is not allowed"),
    ("SELECT * FROM other_table", "table 'other_table' is not one of the query's views"),
    ("SELECT * FROM nw LATERAL VIEW explode(array(id, amount)) t AS e", "LATERAL is not allowed"),
    # non-allowed columns, however reached
    ("SELECT email FROM nw", "column 'email' of dataset 'northwind' (view nw) is not in its allowedFields"),
    ("SELECT `EmAiL` FROM nw", "column 'email' of dataset 'northwind'"),
    ("SELECT x.email FROM nw AS x", "column 'email' of dataset 'northwind'"),
    ("SELECT id FROM nw WHERE email LIKE '%@contoso.com'", "column 'email' of dataset 'northwind'"),
    ("SELECT id FROM nw /* harmless */ UNION SELECT email FROM nw", "column 'email' of dataset 'northwind'"),
    ("SELECT e FROM (SELECT email AS e FROM nw) AS s", "column 'email'"),
    ("WITH c AS (SELECT * FROM nw) SELECT email FROM c", "column 'email'"),
    ("SELECT id, (SELECT MAX(ssn) FROM wg) FROM nw", "column 'ssn' of dataset 'woodgrove'"),
    ("SELECT COUNT(*) FROM wg GROUP BY ssn", "column 'ssn' of dataset 'woodgrove'"),
    ("SELECT id -- the id only\n, email FROM nw", "column 'email'"),
    ("SELECT id FROM nw WHERE id = 1 OR email IS NOT NULL", "column 'email'"),
    ("SELECT no_such FROM nw", "column 'no_such' is not a column of any of the query's views"),
    (f"SELECT {ROW_ID_COLUMN} FROM nw", f"column '{ROW_ID_COLUMN}'"),
    # row-level output from the aggregate-only dataset
    ("SELECT spend FROM wg", "column 'spend' of aggregate-only dataset 'woodgrove' reaches the output"),
    ("SELECT * FROM wg", "of aggregate-only dataset 'woodgrove' reaches the output"),
    ("SELECT 1 FROM wg", "returns a row per row of aggregate-only dataset 'woodgrove'"),
    ("SELECT nw.id FROM nw JOIN wg ON nw.id = wg.id", "a row per row of aggregate-only dataset 'woodgrove'"),
    ("SELECT wg.id, COUNT(*) FROM wg GROUP BY wg.id", "column 'id' of aggregate-only dataset 'woodgrove'"),
    ("SELECT spend + 0 AS s, COUNT(*) FROM wg GROUP BY spend", "column 'spend' of aggregate-only"),
    ("SELECT SUM(spend) OVER (PARTITION BY id) FROM wg", "of aggregate-only dataset 'woodgrove'"),
    ("SELECT ROW_NUMBER() OVER (ORDER BY spend) FROM wg", "column 'spend' of aggregate-only"),
    ("SELECT MAX(spend) FROM wg", "column 'spend' of aggregate-only"),
    ("SELECT MIN(spend), COUNT(*) FROM wg", "column 'spend' of aggregate-only"),
    ("SELECT collect_list(spend) FROM wg", "column 'spend' of aggregate-only"),
    ("SELECT first(spend) FROM wg", "column 'spend' of aggregate-only"),
    ("SELECT id FROM nw UNION ALL SELECT spend FROM wg", "aggregate-only dataset 'woodgrove'"),
    ("SELECT COUNT(*) FROM nw UNION ALL SELECT spend FROM wg", "aggregate-only dataset 'woodgrove'"),
    ("WITH leak AS (SELECT spend AS s FROM wg) SELECT s FROM leak", "aggregate-only dataset 'woodgrove'"),
    ("SELECT s FROM (SELECT * FROM (SELECT spend AS s FROM wg) AS a) AS b", "aggregate-only dataset 'woodgrove'"),
    ("SELECT id, (SELECT spend FROM wg WHERE wg.id = nw.id) FROM nw", "column 'spend' of aggregate-only"),
    ("SELECT id FROM nw WHERE id IN (SELECT id FROM wg)", "aggregate-only dataset 'woodgrove'"),
    ("SELECT id FROM nw WHERE EXISTS (SELECT 1 FROM wg WHERE wg.id = nw.id)", "aggregate-only dataset 'woodgrove'"),
    ("SELECT id, (SELECT SUM(spend) FROM wg WHERE wg.id = nw.id) FROM nw",
     "a correlated subquery reads aggregate-only dataset 'woodgrove'"),
    ("WITH wg AS (SELECT spend FROM wg) SELECT spend FROM wg", "aggregate-only dataset 'woodgrove'"),
    ("WITH nw AS (SELECT spend FROM wg) SELECT spend FROM nw", "aggregate-only dataset 'woodgrove'"),
    ("SELECT * FROM nw JOIN wg USING (id)", "aggregate-only dataset 'woodgrove'"),
    ("SELECT GROUPING(id), SUM(spend) FROM wg GROUP BY CUBE(id)", "column 'id' of aggregate-only"),
    ("SELECT array(spend)[0] FROM wg", "column 'spend' of aggregate-only"),
    ("SELECT * FROM wg TABLESAMPLE (1 ROWS)", "aggregate-only dataset 'woodgrove'"),
    ("SELECT CASE WHEN SUM(spend) > 0 THEN MAX(spend) END FROM wg", "column 'spend' of aggregate-only"),
])
def test_hostile_queries_are_refused_naming_the_clause_or_column(sql, reason):
    assert reason in refused(sql)


# --- bounds: the parser and the optimizer recurse, so size and depth are limited before they run ----------


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT " + "(" * 40 + "1" + ")" * 40 + " FROM nw", "nests brackets deeper than 32"),
    ("SELECT " + " + ".join(["id"] * 2000) + " FROM nw", "deeper than 200 levels"),
    ("SELECT " + "CASE WHEN id > 0 THEN " * 600 + "1" + " END" * 600 + " FROM nw", "nested"),
    ("SELECT " + "NOT " * 3000 + "true FROM nw", ""),
    ("SELECT id FROM nw WHERE id IN (" + ", ".join(["1"] * 6000) + ")", "over the limit"),
    ("SELECT id FROM nw --" + "x" * MAX_SQL_CHARS, f"over the limit of {MAX_SQL_CHARS}"),
])
def test_huge_or_deep_sql_is_refused_quickly(sql, reason):
    started = time.perf_counter()
    assert reason in refused(sql)
    assert time.perf_counter() - started < 2.0


# --- properties -------------------------------------------------------------------------------------------

SQL_WORDS = ["SELECT", "FROM", "WHERE", "GROUP BY", "UNION", "nw", "wg", "id", "email", "spend", "(", ")", ",",
             "*", "`", "'", "--", "/*", "*/", ";", "1", "SUM(", "OVER", "AS", "JOIN", "ON", "=", "\n", "\\"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(SQL_WORDS) | st.text(max_size=6), max_size=30).map(" ".join))
def test_any_text_is_checked_or_refused_in_one_line(sql):
    try:
        check_segment(sql, VIEWS)
    except SqlRefused as exc:
        assert str(exc).isprintable()


def _spelled(name: str, draw) -> str:
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    return f"`{cased}`" if draw(st.booleans()) else cased


@st.composite
def row_queries(draw) -> tuple[str, bool]:
    """A query over northwind in one of several shapes, and whether it reads the non-allowed email."""
    columns = draw(st.lists(st.sampled_from(["id", "amount", "email"]), min_size=1, max_size=3))
    where = draw(st.sampled_from(["id", "amount", "email"]))
    alias = draw(st.sampled_from(["", "x"]))
    qualifier = f"{alias}." if alias and draw(st.booleans()) else ""
    listed = ", ".join(qualifier + _spelled(c, draw) for c in columns)
    source = f"nw AS {alias}" if alias else "nw"
    shape = draw(st.sampled_from(["plain", "derived", "cte", "union", "scalar"]))
    inner = f"SELECT {listed} FROM {source} WHERE {qualifier}{_spelled(where, draw)} IS NOT NULL"
    sql = {
        "plain": inner,
        "derived": f"SELECT * FROM ({inner}) AS d",
        "cte": f"WITH c AS ({inner}) SELECT * FROM c",
        "union": f"SELECT {', '.join(['id'] * len(columns))} FROM nw UNION ALL {inner}",
        "scalar": f"SELECT id, (SELECT COUNT(*) FROM ({inner}) AS d) AS n FROM nw",
    }[shape]
    return sql, "email" in [*columns, where]


@settings(max_examples=300, deadline=None)
@given(row_queries())
def test_a_non_allowed_column_is_refused_in_every_shape_and_spelling(case):
    sql, reads_email = case
    if reads_email:
        assert "column 'email' of dataset 'northwind'" in refused(sql)
        return
    checked = check_segment(sql, VIEWS)
    assert {c.name for c in checked.find_all(exp.Column)} <= {"id", "amount", "d", "n", "c"}


AGGREGATE_ITEMS = {  # projection item over woodgrove -> whether it keeps woodgrove's rows hidden
    "SUM(wg.spend)": True, "COUNT(wg.id)": True, "AVG(wg.spend)": True, "COUNT(DISTINCT wg.id)": True,
    "STDDEV(wg.spend)": True, "COUNT(*)": True, "nw.amount": True, "SUM(wg.spend) / COUNT(*)": True,
    "wg.spend": False, "wg.spend + 1": False, "MAX(wg.spend)": False, "MIN(wg.id)": False,
    "SUM(wg.spend) OVER ()": False, "RANK() OVER (ORDER BY wg.spend)": False,
    "CASE WHEN wg.spend > 5 THEN 1 ELSE 0 END": False, "SUM(wg.spend + nw.amount)": True,
    "collect_set(wg.id)": False, "COALESCE(wg.spend, 0)": False,
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(AGGREGATE_ITEMS)), min_size=1, max_size=4), st.booleans())
def test_aggregate_only_data_leaves_only_through_aggregates(items, through_cte):
    projection = ", ".join(f"{item} AS c{i}" for i, item in enumerate(items))
    sql = f"SELECT {projection} FROM nw JOIN wg ON nw.id = wg.id GROUP BY nw.amount"
    if through_cte:  # the same, with woodgrove's rows first passed through a CTE
        sql = ("WITH wgc AS (SELECT wg.id AS id, wg.spend AS spend FROM wg) "
               + sql.replace("JOIN wg ON nw.id = wg.id", "JOIN wgc ON nw.id = wgc.id").replace("wg.", "wgc."))
    if all(AGGREGATE_ITEMS[item] for item in items):
        check_segment(sql, VIEWS)
    else:
        assert "aggregate-only dataset 'woodgrove'" in refused(sql)


# --- the aggregation threshold, run -----------------------------------------------------------------------


def _run(sql: str, connection: sqlite3.Connection) -> set[tuple]:
    return set(connection.execute(sqlglot.transpile(sql, read="spark", write="sqlite")[0]).fetchall())


def test_the_threshold_rewrite_suppresses_groups_with_too_few_rows_of_a_dataset():
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE nw (id, amount, email, {ROW_ID_COLUMN})")
    db.execute(f"CREATE TABLE wg (id, spend, ssn, {ROW_ID_COLUMN})")
    # amount 10: three woodgrove rows join it (K=3 holds); amount 20: two (suppressed); 30: one (suppressed)
    db.executemany("INSERT INTO nw VALUES (?, ?, 'x', ?)", [(1, 10, 1), (2, 20, 2), (3, 30, 3)])
    db.executemany("INSERT INTO wg VALUES (?, ?, 0, ?)",
                   [(1, 5, 1), (1, 6, 2), (1, 7, 3), (2, 8, 4), (2, 9, 5), (3, 1, 6)])
    sql = ("SELECT nw.amount AS amount, SUM(wg.spend) AS total FROM nw JOIN wg ON nw.id = wg.id "
           "GROUP BY nw.amount")
    checked = check_segment(sql, VIEWS)
    assert _run(checked.sql(dialect="spark"), db) == {(10, 18), (20, 17), (30, 1)}
    rewritten = with_aggregation_threshold(checked, VIEWS)
    assert f"HAVING COUNT(DISTINCT `wg`.`{ROW_ID_COLUMN}`) >= 3" in rewritten
    assert _run(rewritten, db) == {(10, 18)}


def test_each_dataset_keeps_its_own_threshold():
    strict_rows = {**VIEWS, "nw": dataset("northwind", "row", ["id", "amount"], ["id", "amount"], threshold=50)}
    checked = check_segment("SELECT COUNT(*) AS n FROM nw JOIN wg ON nw.id = wg.id GROUP BY nw.amount", strict_rows)
    rewritten = with_aggregation_threshold(checked, strict_rows)
    assert f"COUNT(DISTINCT `nw`.`{ROW_ID_COLUMN}`) >= 50" in rewritten
    assert f"COUNT(DISTINCT `wg`.`{ROW_ID_COLUMN}`) >= 3" in rewritten


@pytest.mark.parametrize(("sql", "reason"), [
    ("WITH w AS (SELECT id FROM wg) SELECT COUNT(*) FROM w", "read its view wg in the output SELECT itself"),
    ("SELECT COUNT(*) FROM (SELECT id FROM wg) AS s", "read its view wg in the output SELECT itself"),
])
def test_a_threshold_that_cannot_be_counted_is_refused(sql, reason):
    with pytest.raises(SqlRefused, match=reason):
        with_aggregation_threshold(check_segment(sql, VIEWS), VIEWS)


def test_a_row_dataset_above_k_must_be_aggregated():
    views = {"nw": dataset("northwind", "row", ["id"], ["id"], threshold=5)}
    with pytest.raises(SqlRefused, match="threshold of 5: the query must aggregate"):
        with_aggregation_threshold(check_segment("SELECT id FROM nw", views), views)


def test_the_rewrite_threshold_applies_to_each_branch_of_a_union():
    sql = "SELECT COUNT(*) AS n FROM wg GROUP BY wg.spend UNION ALL SELECT SUM(wg.spend) AS n FROM wg"
    rewritten = with_aggregation_threshold(check_segment(sql, VIEWS), VIEWS)
    assert rewritten.count(f"COUNT(DISTINCT `wg`.`{ROW_ID_COLUMN}`) >= 3") == 2


def test_comments_do_not_survive_into_the_sql_spark_runs():
    checked = check_segment("SELECT id FROM nw -- */ , email FROM nw /*", VIEWS)
    assert "email" not in with_aggregation_threshold(checked, VIEWS)
