"""Private segments: the SQL is analysed with sqlglot, rewritten so that each person contributes at most the
owner's bound of rows, computed exactly in Spark over the public key set only, and released through
OpenDP's noise mechanisms, which spend the segment's ε.

What a private segment may be (anything else is refused with one line naming the clause or column):
- one SELECT over one view (no join, subquery, CTE, union, HAVING, DISTINCT, ORDER BY, LIMIT, window),
  with an optional WHERE without subqueries, whose dataset has a privacy policy (its person key and bound);
- GROUP BY plain columns, each with a public key set in the segment's `publicKeys` (and every column of the
  key set grouped): every combination of the public values is released, present in the data or not, so
  that which groups exist is not itself an exact answer;
- outputs that are the grouping columns, or COUNT(*), COUNT(col), SUM(col) and AVG(col) over a plain column,
  SUM and AVG with `bounds` for their column (each value is clamped to [low, high]).

The mechanism. The rows of the view pass the WHERE, then `ROW_NUMBER() OVER (PARTITION BY person_key)`
keeps at most `contributionBound` rows per person (NULL keys are one person), and rows outside the public key
set are dropped. So adding or removing one person changes a vector of counts over the key set by at most
the bound in L1 distance, and a vector of clamped sums by at most bound × max(|low|, |high|). Each count and
sum is one OpenDP Laplace measurement (discrete Laplace on integers, Laplace on floats) whose scale OpenDP
calibrates (`binary_search_param`) so that it spends at most its share of ε; AVG is a noisy sum over a noisy
count (post-processing, two measurements); the segment's ε is split evenly between its measurements
(sequential composition). The mechanisms are pure ε-DP: δ is 0, within any owner's `delta`.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import opendp.prelude as dp
from sqlglot import exp

from .documents import EPSILON_UNITS, Dataset, PostFilter, Segment
from .sqlguard import DIALECT, ROW_ID_COLUMN, SqlRefused, check_segment

# OpenDP gates its mechanisms behind "contrib": they are implemented and tested by the OpenDP team but (as
# most of the library) not yet vetted by its formal proof review. Laplace with calibrated scale is the one
# mechanism used here; the distribution test in tests/unit/analytics/test_dp.py checks what it releases.
dp.enable_features("contrib")

RANK_COLUMN = "_ccr_rank"
_KEY_PREFIX = "_ccr_key"
_MEASURE_PREFIX = "_ccr_measure"
#: clauses a private SELECT may have; the others each change what the noise has to cover
_ALLOWED_CLAUSES = frozenset({"expressions", "from_", "from", "where", "group"})
#: what a private segment's WHERE may hold: columns, constants, comparisons and logic. No arithmetic, cast or
#: function: those can fail on a value (a division by zero, a bad cast), and whether a run failed is an
#: answer about the data that no ε accounts for (the run's session also runs without ANSI errors)
_WHERE_NODES: tuple[type[exp.Expression], ...] = (
    exp.Where, exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.And, exp.Or,
    exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.In, exp.Between, exp.Is, exp.Like,
    exp.Neg,
)
_NUMERIC_TYPES = frozenset({"tinyint", "smallint", "int", "bigint", "float", "double", "decimal"})

MeasureKind = Literal["count", "sum"]


class PrivateSegmentRefused(SqlRefused):
    """A private segment the room cannot make differentially private (the message names the clause)."""


@dataclass(frozen=True)
class Measure:
    """One noisy vector over the key set: a count of rows (or of a column's non-NULL values) or a clamped sum."""

    kind: MeasureKind
    column: str | None
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class Output:
    """One output column: a grouping column (`key` is its index) or an aggregate over measures."""

    name: str
    key: int | None = None
    aggregate: Literal["count", "sum", "avg"] | None = None
    #: indexes into PrivatePlan.measures: (count) or (sum), or (sum, count) for avg
    measures: tuple[int, ...] = ()


@dataclass(frozen=True)
class PrivatePlan:
    sequence: int
    #: the exact, contribution-bounded aggregates over the public key set, for Spark
    sql: str
    epsilon: float
    contribution_bound: int
    key_columns: tuple[str, ...]
    #: every combination of the public values, in release order
    cells: tuple[tuple[str | int, ...], ...]
    measures: tuple[Measure, ...]
    outputs: tuple[Output, ...]
    post_filters: tuple[PostFilter, ...]

    @property
    def epsilon_per_measure(self) -> float:
        return self.epsilon / len(self.measures)


def plan_private(segment: Segment, views: Mapping[str, Dataset]) -> PrivatePlan:
    """The private segment's plan; refused with one line (naming a clause or column, never a value)."""
    where = f"segment {segment.execution_sequence} (private)"
    # Grouping columns of an aggregate-only dataset reach the output here only as the public key set's own
    # values, never the data's: the guards run as for a row dataset, the shape check below does the rest.
    as_rows = {view: replace(dataset, access_mode="row") for view, dataset in views.items()}
    checked = check_segment(segment.sql, as_rows)
    if not isinstance(checked, exp.Select):
        raise PrivateSegmentRefused(f"{where}: must be one SELECT (no UNION or set operation)")
    for clause, value in checked.args.items():
        if value and clause not in _ALLOWED_CLAUSES:
            raise PrivateSegmentRefused(f"{where}: {clause.upper()} is not supported in a private segment")
    source = (checked.args.get("from_") or checked.args.get("from")).this
    if not isinstance(source, exp.Table) or source.name.lower() not in views:
        raise PrivateSegmentRefused(f"{where}: must read one of the query's views directly (no subquery)")
    dataset = views[source.name.lower()]
    if dataset.privacy is None:
        raise PrivateSegmentRefused(f"{where}: dataset {dataset.name!r} has no privacy policy (no person key "
                                    "to bound contributions by)")
    alias = source.alias_or_name
    where_clause = checked.args.get("where")
    if where_clause is not None:
        for node in where_clause.walk():
            if not isinstance(node, _WHERE_NODES):
                raise PrivateSegmentRefused(f"{where}: WHERE holds {node.key.upper()}; a private segment's WHERE "
                                            "compares columns with constants only (no function, cast, arithmetic "
                                            "or subquery)")

    public = {column.lower(): (column, values) for column, values in segment.public_keys}
    bounds = {column.lower(): pair for column, pair in segment.bounds}
    group = checked.args.get("group")
    grouped = list(group.expressions) if group else []
    key_columns: list[str] = []
    for expression in grouped:
        if not isinstance(expression, exp.Column):
            raise PrivateSegmentRefused(f"{where}: GROUP BY takes plain columns only")
        if expression.name.lower() not in public:
            raise PrivateSegmentRefused(f"{where}: GROUP BY column {expression.name!r} has no public key set "
                                        "(publicKeys)")
        key_columns.append(expression.name.lower())
    missing = sorted(set(public) - set(key_columns))
    if missing:
        raise PrivateSegmentRefused(f"{where}: publicKeys column {public[missing[0]][0]!r} is not grouped by")

    measures: list[Measure] = []
    outputs: list[Output] = []

    def measure(kind: MeasureKind, column: str | None) -> int:
        wanted = Measure(kind, column, bounds.get(column) if kind == "sum" and column else None)
        if wanted not in measures:
            measures.append(wanted)
        return measures.index(wanted)

    for projection in checked.expressions:
        name = projection.alias_or_name
        value = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(value, exp.Column):
            if value.name.lower() not in key_columns:
                raise PrivateSegmentRefused(f"{where}: output column {name!r} is neither grouped by nor an "
                                            "aggregate")
            outputs.append(Output(name, key=key_columns.index(value.name.lower())))
            continue
        kind = _aggregate_kind(value, where, name)
        argument = value.this
        if isinstance(argument, exp.Star):
            if kind != "count":
                raise PrivateSegmentRefused(f"{where}: output {name!r}: only COUNT takes *")
            outputs.append(Output(name, aggregate="count", measures=(measure("count", None),)))
            continue
        if not isinstance(argument, exp.Column):
            raise PrivateSegmentRefused(f"{where}: output {name!r}: aggregates take a plain column")
        column = argument.name.lower()
        types = {c.name.lower(): c.type for c in dataset.schema}
        if kind in ("sum", "avg") and types.get(column) not in _NUMERIC_TYPES:
            raise PrivateSegmentRefused(f"{where}: output {name!r}: column {argument.name!r} is not numeric")
        if kind in ("sum", "avg") and column not in bounds:
            raise PrivateSegmentRefused(f"{where}: output {name!r}: column {argument.name!r} has no bounds "
                                        "(bounds: {column: [low, high]})")
        if kind == "count":
            outputs.append(Output(name, aggregate="count", measures=(measure("count", column),)))
        elif kind == "sum":
            outputs.append(Output(name, aggregate="sum", measures=(measure("sum", column),)))
        else:
            outputs.append(Output(name, aggregate="avg", measures=(measure("sum", column), measure("count", column))))
    if not measures:
        raise PrivateSegmentRefused(f"{where}: has no aggregate to release")

    key_values = [public[column][1] for column in key_columns]
    cells = tuple(itertools.product(*key_values)) if key_columns else ((),)
    sql = _bounded_sql(source, alias, where_clause, dataset.privacy.person_key, dataset.privacy.contribution_bound,
                       key_columns, key_values, measures)
    return PrivatePlan(segment.execution_sequence, sql, segment.epsilon / EPSILON_UNITS,
                       dataset.privacy.contribution_bound, tuple(key_columns), cells, tuple(measures),
                       tuple(outputs), segment.post_filters)


def _aggregate_kind(value: exp.Expression, where: str, name: str) -> Literal["count", "sum", "avg"]:
    if isinstance(value, exp.Count) and not isinstance(value.this, exp.Distinct):
        return "count"
    if isinstance(value, exp.Sum) and not isinstance(value.this, exp.Distinct):
        return "sum"
    if isinstance(value, exp.Avg) and not isinstance(value.this, exp.Distinct):
        return "avg"
    raise PrivateSegmentRefused(f"{where}: output {name!r}: a private segment releases COUNT, SUM and AVG "
                                "(without DISTINCT) and its grouping columns only")


def _bounded_sql(source: exp.Table, alias: str, where_clause: exp.Where | None, person_key: str, bound: int,
                 key_columns: Sequence[str], key_values: Sequence[Sequence[str | int]],
                 measures: Sequence[Measure]) -> str:
    """SELECT keys, measures FROM (the view's rows passing WHERE, ranked within each person) WHERE rank <= bound
    AND each key in its public values GROUP BY keys — built as a tree, never by pasting text."""
    rank = exp.Window(this=exp.RowNumber(), partition_by=[exp.column(person_key, table=alias, quoted=True)],
                      order=exp.Order(expressions=[exp.Ordered(this=exp.column(ROW_ID_COLUMN, table=alias,
                                                                                  quoted=True))]))
    inner = exp.select(exp.Star(), exp.alias_(rank, RANK_COLUMN, quoted=True)).from_(source.copy())
    if where_clause is not None:
        inner = inner.where(where_clause.this.copy())
    condition: exp.Expression = exp.LTE(this=exp.column(RANK_COLUMN, table=alias, quoted=True),
                                         expression=exp.Literal.number(bound))
    for column, values in zip(key_columns, key_values, strict=True):
        literals = [exp.Literal.string(v) if isinstance(v, str) else exp.Literal.number(v) for v in values]
        condition = exp.and_(condition, exp.In(this=exp.column(column, table=alias, quoted=True),
                                               expressions=literals))
    projections: list[exp.Expression] = [exp.alias_(exp.column(column, table=alias, quoted=True),
                                                    f"{_KEY_PREFIX}{index}", quoted=True)
                                         for index, column in enumerate(key_columns)]
    for index, wanted in enumerate(measures):
        if wanted.kind == "count":
            counted = exp.Star() if wanted.column is None else exp.column(wanted.column, table=alias, quoted=True)
            value: exp.Expression = exp.Count(this=counted)
        else:
            assert wanted.column is not None and wanted.bounds is not None
            low, high = wanted.bounds
            number = exp.cast(exp.column(wanted.column, table=alias, quoted=True), "double")
            clamped = exp.Least(this=exp.Greatest(this=number, expressions=[exp.Literal.number(low)]),
                                expressions=[exp.Literal.number(high)])
            value = exp.Sum(this=clamped)
        projections.append(exp.alias_(value, f"{_MEASURE_PREFIX}{index}", quoted=True))
    outer = exp.select(*projections).from_(exp.Subquery(this=inner, alias=exp.TableAlias(
        this=exp.to_identifier(alias, quoted=True)))).where(condition)
    if key_columns:
        outer = outer.group_by(*(exp.column(column, table=alias, quoted=True) for column in key_columns))
    return outer.sql(dialect=DIALECT)


# --- the release ----------------------------------------------------------------------------------------------

def sensitivity(plan: PrivatePlan, measure: Measure) -> int | float:
    """How far one person moves the measure's vector over the key set (L1): bound rows, each counted once or
    clamped into [low, high]."""
    if measure.kind == "count":
        return plan.contribution_bound
    assert measure.bounds is not None
    return plan.contribution_bound * max(abs(measure.bounds[0]), abs(measure.bounds[1]))


def mechanism(plan: PrivatePlan, measure: Measure) -> dp.Measurement:
    """The OpenDP measurement releasing one measure's vector, its scale calibrated to spend at most its share
    of ε for the measure's sensitivity."""
    if measure.kind == "count":
        space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
        d_in: int | float = int(sensitivity(plan, measure))
    else:
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
        d_in = float(sensitivity(plan, measure))
    return dp.binary_search_chain(lambda scale: dp.m.make_laplace(*space, scale), d_in=d_in,
                                  d_out=plan.epsilon_per_measure)


def release(plan: PrivatePlan, exact_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The noisy result: one row per cell of the key set, in the segment's output columns, post-filters
    applied to the noisy values (post-processing: free of charge). `exact_rows` are the bounded SQL's rows."""
    exact: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for row in exact_rows:
        exact[tuple(str(row[f"{_KEY_PREFIX}{i}"]) for i in range(len(plan.key_columns)))] = row
    vectors: list[list[int] | list[float]] = []
    for index, measure in enumerate(plan.measures):
        column = f"{_MEASURE_PREFIX}{index}"
        found = [exact.get(tuple(str(v) for v in cell), {}).get(column) for cell in plan.cells]
        if measure.kind == "count":
            vectors.append(mechanism(plan, measure)([int(v or 0) for v in found]))
        else:
            vectors.append(mechanism(plan, measure)([float(v or 0.0) for v in found]))
    released: list[dict[str, Any]] = []
    for position, cell in enumerate(plan.cells):
        row: dict[str, Any] = {}
        for output in plan.outputs:
            if output.key is not None:
                row[output.name] = cell[output.key]
            elif output.aggregate == "avg":
                total, count = (vectors[m][position] for m in output.measures)
                # a noisy count can be 0 or negative; the average of a clamped column stays in its bounds
                low, high = plan.measures[output.measures[0]].bounds or (0.0, 0.0)
                row[output.name] = min(max(total / max(count, 1), low), high)
            else:
                row[output.name] = vectors[output.measures[0]][position]
        released.append(row)
    return [row for row in released if _kept(row, plan.post_filters)]


def _kept(row: Mapping[str, Any], filters: Sequence[PostFilter]) -> bool:
    columns = {name.lower(): name for name in row}
    for post in filters:
        name = columns.get(post.column_name.lower())
        if name is None:
            raise PrivateSegmentRefused(f"post-filter column {post.column_name!r} is not a column of the result "
                                        f"({', '.join(row)})")
        value = row[name]
        if not isinstance(value, int | float) or value < post.value:
            return False
    return True


def write_csv(path: Path, plan: PrivatePlan, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([output.name for output in plan.outputs])
        for row in rows:
            writer.writerow([row[output.name] for output in plan.outputs])
