"""The SQL guards: a query segment is refused before anything runs unless it provably reads only what the
datasets' owners allow.

`check_segment` parses the SQL with sqlglot (Spark dialect) and refuses, naming the clause, column and
dataset:
- text over `MAX_SQL_CHARS` or nested deeper than `MAX_PAREN_DEPTH` brackets (counted on the raw text,
  before the parser sees it: the parser and the optimizer recurse, so depth is what could exhaust the
  stack), or a parsed tree over `MAX_TREE_NODES` / `MAX_TREE_DEPTH` (measured iteratively);
- anything but one SELECT (DDL, DML, commands, several statements), TRANSFORM scripts, generators
  (LATERAL VIEW explode...), a function sqlglot does not know (a UDF, `reflect`, `java_method`,
  `read_files`, `input_file_name`...): only functions sqlglot models as Spark built-ins pass;
- a table that is not one of the query's views or its own CTEs (`csv.\\`/path\\``, `db.table`);
- a column outside the dataset's `allowedFields`: the tree is qualified against a schema holding only the
  allowed columns, so a non-allowed column is unknown however it is reached (aliases, joins, subqueries,
  `*`, CTEs, unions, case or quoting tricks: Spark and sqlglot both compare identifiers ignoring case);
- row-level output from an aggregate-only dataset: a column of it (or of a subquery or CTE carrying it
  unaggregated) in the output outside an allowed aggregate, a window function over it, or an output that
  is not aggregated while it reads such a dataset. Scalar and IN/EXISTS subqueries count as output (what
  they return reaches the result), so a semi-join on an aggregate-only dataset is refused: join it instead.
  MIN, MAX, FIRST, COLLECT_LIST and the like are not aggregates here: each returns one party's raw values.

`with_aggregation_threshold` rewrites a checked segment so that every output group counts at least K
distinct rows of each dataset it reads (K from the dataset document), by `ROW_ID_COLUMN`, a row id the
room's view adds to each dataset (the user's SQL cannot name it: it is not an allowed field).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from ..common.errors import BadRequest
from .documents import Dataset

DIALECT = "spark"
MAX_SQL_CHARS = 16 * 1024
#: brackets inside brackets on the raw text; 32 is far beyond hand-written SQL and far below the depth at
#: which sqlglot's recursive parser and generator approach Python's recursion limit
MAX_PAREN_DEPTH = 32
MAX_TREE_DEPTH = 200
MAX_TREE_NODES = 20_000
ROW_ID_COLUMN = "_ccr_row_id"

#: aggregates whose result does not carry any single row's value
SAFE_AGGREGATES: tuple[type[exp.Expression], ...] = (
    exp.Count, exp.Sum, exp.Avg, exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance,
    exp.VariancePop, exp.ApproxDistinct,
)
_REFUSED_CLAUSES: tuple[type[exp.Expression], ...] = (
    exp.DDL, exp.DML, exp.Command, exp.QueryTransform, exp.Lateral, exp.UDTF, exp.Explode, exp.Inline,
    exp.Unnest, exp.Cache, exp.Uncache, exp.Use, exp.Set, exp.Describe, exp.Refresh, exp.Pragma,
)
_UNRESOLVED = re.compile(r"Column '(.+?)' could not be resolved|Unknown column: (\S+)")


class SqlRefused(BadRequest):
    """A query segment's SQL is refused before it runs; the message names the clause, column and dataset."""

    code = "SqlRefused"

    def __init__(self, message: str):
        # a refusal quotes the SQL's own names and text: unprintable ones (terminal escapes, bidi controls,
        # unassigned code points) must not reach a terminal or a log as they were sent
        super().__init__(_one_line(message))


def check_segment(sql: str, views: Mapping[str, Dataset]) -> exp.Query:
    """The segment's SQL parsed and qualified against the allowed columns of the views (by view name),
    or SqlRefused naming why."""
    _check_text_bounds(sql)
    views = {name.lower(): dataset for name, dataset in views.items()}
    tree = _parse_single_select(sql)
    _check_tree_bounds(tree)
    _check_clauses_and_tables(tree, views)
    qualified = _qualify(tree, views)
    _check_aggregate_only(qualified, views)
    return qualified


def _check_text_bounds(sql: str) -> None:
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"the SQL is {len(sql)} characters, over the limit of {MAX_SQL_CHARS}")
    depth = 0
    for char in sql:
        # counted on the raw text (brackets in strings and comments too): over-counting only refuses
        if char in "([{":
            depth += 1
            if depth > MAX_PAREN_DEPTH:
                raise SqlRefused(f"the SQL nests brackets deeper than {MAX_PAREN_DEPTH} levels")
        elif char in ")]}":
            depth -= 1


def _parse_single_select(sql: str) -> exp.Query:
    try:
        statements = [s for s in sqlglot.parse(sql, dialect=DIALECT) if s is not None]
    except SqlglotError as exc:
        raise SqlRefused(f"the SQL does not parse: {_one_line(str(exc))}") from None
    except RecursionError:
        raise SqlRefused("the SQL is nested too deeply to parse") from None
    if len(statements) != 1:
        raise SqlRefused(f"the SQL must be one statement, not {len(statements)}")
    statement = statements[0]
    if not isinstance(statement, exp.Query) or isinstance(statement, exp.Values):
        raise SqlRefused(f"the SQL must be a SELECT, not {statement.key.upper()}")
    return statement


def _check_tree_bounds(tree: exp.Expression) -> None:
    stack = [(tree, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_TREE_NODES:
            raise SqlRefused(f"the SQL has more than {MAX_TREE_NODES} syntax nodes")
        if depth > MAX_TREE_DEPTH:
            raise SqlRefused(f"the SQL's syntax tree is deeper than {MAX_TREE_DEPTH} levels")
        stack.extend((child, depth + 1) for child in node.iter_expressions())


def _check_clauses_and_tables(tree: exp.Expression, views: Mapping[str, Dataset]) -> None:
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.walk():
        if isinstance(node, _REFUSED_CLAUSES):
            raise SqlRefused(f"{node.key.upper()} is not allowed in a query: only a single SELECT over the "
                             "query's views runs")
        if isinstance(node, exp.Anonymous):
            raise SqlRefused(f"function {node.name}() is not offered: only Spark's built-in functions run "
                             "(no UDFs, reflect, java_method or file readers)")
        if isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                raise SqlRefused(f"table function {node.this.sql(DIALECT)[:64]} is not allowed: only the "
                                 "query's views can be read")
            if node.args.get("db") or node.args.get("catalog"):
                raise SqlRefused(f"table {node.sql(DIALECT)[:64]} is not allowed: only the query's views "
                                 f"({', '.join(sorted(views))}) can be read, by their plain names")
            if node.name.lower() not in views and node.name.lower() not in ctes:
                raise SqlRefused(f"table {node.name!r} is not one of the query's views "
                                 f"({', '.join(sorted(views))})")


def _allowed_schema(views: Mapping[str, Dataset]) -> dict[str, dict[str, str]]:
    return {view: {c.name.lower(): c.type for c in ds.allowed_columns()} for view, ds in views.items()}


def _qualify(tree: exp.Query, views: Mapping[str, Dataset]) -> exp.Query:
    try:
        qualified = qualify(tree.copy(), schema=_allowed_schema(views), dialect=DIALECT,
                            validate_qualify_columns=True, expand_stars=True)
    except OptimizeError as exc:
        raise SqlRefused(_unresolved_reason(str(exc), views)) from None
    except SqlglotError as exc:
        raise SqlRefused(f"the SQL cannot be checked: {_one_line(str(exc))}") from None
    except RecursionError:
        raise SqlRefused("the SQL is nested too deeply to check") from None
    assert isinstance(qualified, exp.Query)
    # comments are dropped: regenerated as /* */ blocks, a comment is text we would hand Spark unchecked
    for node in qualified.walk():
        node.comments = None
    return qualified


def _unresolved_reason(message: str, views: Mapping[str, Dataset]) -> str:
    match = _UNRESOLVED.search(message)
    if not match:
        return f"the SQL cannot be checked: {_one_line(message)}"
    column = match.group(1) or match.group(2)
    for view, dataset in sorted(views.items()):
        if any(c.name.lower() == column.lower() for c in dataset.schema):
            return (f"column {column!r} of dataset {dataset.name!r} (view {view}) is not in its allowedFields")
    return f"column {column!r} is not a column of any of the query's views ({', '.join(sorted(views))})"


# --- aggregate-only datasets --------------------------------------------------------------------------------


def _key(node: exp.Expression) -> int:
    while isinstance(node, exp.Subquery):
        node = node.this
    return id(node)


def _in_safe_aggregate(column: exp.Column, stop: exp.Expression) -> bool:
    """Whether `column` is inside an allowed aggregate that is not itself a window function."""
    node = column.parent
    while node is not None and node is not stop.parent:
        if isinstance(node, exp.AggFunc) and not isinstance(node.parent, exp.Window):
            return isinstance(node, SAFE_AGGREGATES)
        if isinstance(node, exp.Window):
            return False
        node = node.parent
    return False


def _is_aggregated(select: exp.Select) -> bool:
    if select.args.get("group"):
        return True
    return any(isinstance(agg, SAFE_AGGREGATES) and not isinstance(agg.parent, exp.Window)
               for projection in select.selects for agg in projection.find_all(exp.AggFunc))


class _Flow:
    """What each scope's output carries from aggregate-only datasets, computed inner scopes first."""

    def __init__(self, views: Mapping[str, Dataset]):
        self.aggregate_views = {v for v, ds in views.items() if ds.access_mode == "aggregate"}
        self.views = views
        #: output column names carrying unaggregated values of an aggregate-only dataset, by scope
        self.tainted: dict[int, set[str]] = {}
        #: scopes that yield a row per row of an aggregate-only dataset, with the dataset's name
        self.row_level: dict[int, str] = {}

    def source(self, scope: Scope | None, table: str) -> exp.Table | Scope | None:
        while scope is not None:  # a correlated column names a table of an enclosing scope
            if table in scope.sources:
                return scope.sources[table]
            scope = scope.parent
        return None

    def raw_dataset(self, scope: Scope, column: exp.Column) -> str | None:
        """The aggregate-only dataset whose row-level value `column` carries, if any."""
        source = self.source(scope, column.table)
        if isinstance(source, exp.Table) and source.name.lower() in self.aggregate_views:
            return self.views[source.name.lower()].name
        if isinstance(source, Scope) and column.name in self.tainted.get(_key(source.expression), set()):
            return self.row_level.get(_key(source.expression)) or self._any_aggregate_dataset()
        return None

    def _any_aggregate_dataset(self) -> str:
        return ", ".join(sorted(self.views[v].name for v in self.aggregate_views))

    def reads_row_level(self, scope: Scope) -> str | None:
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and source.name.lower() in self.aggregate_views:
                return self.views[source.name.lower()].name
            if isinstance(source, Scope) and _key(source.expression) in self.row_level:
                return self.row_level[_key(source.expression)]
        return None


def _check_aggregate_only(tree: exp.Query, views: Mapping[str, Dataset]) -> None:
    flow = _Flow(views)
    if not flow.aggregate_views:
        return
    for scope in traverse_scope(tree):
        node = scope.expression
        is_output = scope.is_root or scope.is_subquery
        if isinstance(node, exp.SetOperation):
            left, right = _key(node.left), _key(node.right)
            names = node.named_selects
            tainted = flow.tainted.get(left, set()) | {
                names[i] for i, name in enumerate(node.right.named_selects)
                if i < len(names) and name in flow.tainted.get(right, set())}
            row_level = flow.row_level.get(left) or flow.row_level.get(right)
        elif isinstance(node, exp.Select):
            tainted, first = set(), None
            for projection in node.selects:
                for column in projection.find_all(exp.Column):
                    dataset = flow.raw_dataset(scope, column)
                    if dataset and not _in_safe_aggregate(column, projection):
                        tainted.add(projection.alias_or_name)
                        first = first or (column, dataset)
            if is_output and first:
                column, dataset = first
                raise SqlRefused(f"column {column.name!r} of aggregate-only dataset {dataset!r} reaches the "
                                 "output outside COUNT/SUM/AVG/STDDEV/VARIANCE (or inside a window)")
            read = flow.reads_row_level(scope)
            if read and scope.is_correlated_subquery:
                # an aggregate per outer row is a GROUP BY on the correlation that no threshold can count
                raise SqlRefused(f"a correlated subquery reads aggregate-only dataset {read!r}: join it and "
                                 "GROUP BY instead")
            row_level = read if read and not _is_aggregated(node) else None
        else:
            continue
        if is_output and row_level:
            raise SqlRefused(f"the query returns a row per row of aggregate-only dataset {row_level!r}: "
                             "add GROUP BY or an aggregate (COUNT, SUM, AVG...)")
        if is_output and tainted:
            raise SqlRefused(f"output column {sorted(tainted)[0]!r} carries unaggregated values of an "
                             f"aggregate-only dataset ({flow._any_aggregate_dataset()})")
        flow.tainted[_key(node)] = tainted
        if row_level:
            flow.row_level[_key(node)] = row_level


# --- the aggregation threshold ---------------------------------------------------------------------------


def with_aggregation_threshold(checked: exp.Query, views: Mapping[str, Dataset]) -> str:
    """The Spark SQL of a `check_segment` result with each output SELECT's groups suppressed when they
    count fewer than K distinct rows (by `ROW_ID_COLUMN`) of any dataset it reads, K being that dataset's
    aggregationThreshold (each dataset its own K, so the strictest owner always holds).

    A dataset whose K is above 1 must be read by the output SELECT itself, where its rows can be counted:
    reached only through a subquery or CTE it is refused (the rows would have been counted away)."""
    views = {name.lower(): dataset for name, dataset in views.items()}
    tree = checked.copy()
    outputs = [tree] if isinstance(tree, exp.Select) else list(_union_branches(tree))
    scopes = {id(scope.expression): scope for scope in traverse_scope(tree)}
    for select in outputs:
        scope = scopes[id(select)]
        direct = {alias: src.name.lower() for alias, src in scope.sources.items()
                  if isinstance(src, exp.Table) and src.name.lower() in views}
        reached = _views_reached(scope, views)
        for view in sorted(reached - set(direct.values())):
            if views[view].aggregation_threshold > 1:
                raise SqlRefused(f"dataset {views[view].name!r} has an aggregation threshold of "
                                 f"{views[view].aggregation_threshold}: read its view {view} in the output "
                                 "SELECT itself, not only through a subquery or CTE")
        conditions = []
        for alias, view in sorted(direct.items()):
            threshold = views[view].aggregation_threshold
            if threshold <= 1:
                continue
            if not _is_aggregated(select):
                raise SqlRefused(f"dataset {views[view].name!r} has an aggregation threshold of {threshold}: "
                                 "the query must aggregate (GROUP BY or an aggregate)")
            distinct_rows = exp.Count(this=exp.Distinct(expressions=[exp.column(ROW_ID_COLUMN, table=alias,
                                                                                quoted=True)]))
            conditions.append(exp.GTE(this=distinct_rows, expression=exp.Literal.number(threshold)))
        for condition in conditions:
            select.having(condition, copy=False)
    return tree.sql(dialect=DIALECT)


def _union_branches(node: exp.Expression):
    while isinstance(node, exp.Subquery):
        node = node.this
    if isinstance(node, exp.SetOperation):
        yield from _union_branches(node.left)
        yield from _union_branches(node.right)
    elif isinstance(node, exp.Select):
        yield node


def _views_reached(scope: Scope, views: Mapping[str, Dataset]) -> set[str]:
    reached: set[str] = set()
    pending = [scope]
    while pending:
        current = pending.pop()
        for source in current.sources.values():
            if isinstance(source, exp.Table) and source.name.lower() in views:
                reached.add(source.name.lower())
            elif isinstance(source, Scope):
                pending.append(source)
        pending.extend(current.subquery_scopes)
        pending.extend(current.set_operation_scopes)
    return reached


_TERMINAL_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    """sqlglot's messages underline the culprit with terminal escapes and span lines; a refusal is one
    plain line (it reaches logs, an API's error body and a terminal)."""
    plain = " ".join(_TERMINAL_ESCAPES.sub(" ", text).split())
    return "".join(char if char.isprintable() else "?" for char in plain)[:400]
