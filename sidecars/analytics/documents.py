"""The dataset and query documents of an analytics room, parsed from untrusted JSON.

A member hands these to the others (through CGS, later), so every field is checked here and every problem
is one line naming its field; all problems of a document are reported at once, as the spec does.

The shapes follow the Azure analytics sample's (`DatasetSpecification`, `Query` with `segments` carrying
`executionSequence`, `preConditions` {viewName, minRowCount}, `postFilters` {columnName, value}) with
what the sample lacks: an owner per dataset, an `accessMode` that can allow only aggregates, and an
aggregation threshold K.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..common.errors import BadRequest
from ..common.untrusted import DocumentLimits, UntrustedInputError, load_json

#: a document is small: a schema of a few hundred columns or a query of a few segments fits in 256 KiB
DOCUMENT_LIMITS = DocumentLimits(max_bytes=256 * 1024, max_depth=8, max_nodes=32768, max_chars=256 * 1024)

#: Spark SQL's scalar types; nested types (array, map, struct) are left out on purpose: a struct's fields
#: would need their own allowedFields, and explode() over an array turns aggregates back into rows
SPARK_TYPES = frozenset({
    "string", "boolean", "tinyint", "smallint", "int", "bigint", "float", "double", "decimal",
    "date", "timestamp", "binary",
})
FORMATS = frozenset({"csv", "parquet", "json"})
ENCRYPTION_MODES = frozenset({"CSE", "SSE", "CPK", "SSE-C"})
ACCESS_MODES = frozenset({"row", "aggregate"})

#: the default K: a row dataset suppresses nothing; an aggregate-only one hides groups of fewer than 10 of
#: its rows, the common floor of k-anonymity guidance for released tables
DEFAULT_THRESHOLD = {"row": 1, "aggregate": 10}
MAX_THRESHOLD = 1_000_000

#: a SQL identifier without quoting, so a name means the same to sqlglot, Spark and a reader (Spark
#: compares identifiers case-insensitively: names are unique ignoring case)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: names of documents and members, as CGS keys them
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SQL_CHARS = 16 * 1024
MAX_SEGMENTS = 16
MAX_COLUMNS = 512
#: ε is kept in millionths: the ledger adds and compares whole numbers, so ten spends of 0.1 are exactly 1
EPSILON_UNITS = 1_000_000
MAX_EPSILON = 100.0
MAX_CONTRIBUTION_BOUND = 10_000
#: a private segment's public key set: values per grouping column, and cells (their product) in all
MAX_PUBLIC_KEYS = 1000
MAX_PUBLIC_CELLS = 10_000


class AnalyticsDocumentError(BadRequest):
    """A dataset or query document is malformed; `problems` holds one line per problem, each naming a field."""

    code = "InvalidAnalyticsDocument"

    def __init__(self, problems: list[str], source: str):
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Encryption:
    mode: Literal["CSE", "SSE", "CPK", "SSE-C"]
    #: the secret (in the room's key store) holding the wrapped data key; CSE, CPK and SSE-C only
    dek_secret: str | None
    #: the key that wraps it; CSE only (CPK and SSE-C hand the storage service the key itself)
    kek_name: str | None


@dataclass(frozen=True)
class Privacy:
    """The owner's differential-privacy policy: every query reading the dataset is private and spends ε."""

    #: the budget, in millionths of ε (see EPSILON_UNITS)
    epsilon_total: int
    delta: float
    per_query_epsilon_max: int
    #: the most rows one person contributes to an aggregate (more are dropped before aggregating)
    contribution_bound: int
    #: the column that identifies a person
    person_key: str


@dataclass(frozen=True)
class Dataset:
    name: str
    owner: str
    store: str
    container: str
    format: str
    schema: tuple[Column, ...]
    allowed_fields: tuple[str, ...]
    access_mode: Literal["row", "aggregate"]
    aggregation_threshold: int
    encryption: Encryption
    privacy: Privacy | None = None

    def allowed_columns(self) -> tuple[Column, ...]:
        allowed = {name.lower() for name in self.allowed_fields}
        return tuple(column for column in self.schema if column.name.lower() in allowed)


@dataclass(frozen=True)
class PreCondition:
    view_name: str
    min_row_count: int


@dataclass(frozen=True)
class PostFilter:
    column_name: str
    #: rows whose column is below this value are dropped (the sample's meaning)
    value: int


@dataclass(frozen=True)
class Segment:
    execution_sequence: int
    sql: str
    pre_conditions: tuple[PreCondition, ...]
    post_filters: tuple[PostFilter, ...]
    #: a private segment's ε in millionths (0: not private), approved with the query
    epsilon: int = 0
    #: grouping column → its public values: every one is released, present in the data or not
    public_keys: tuple[tuple[str, tuple[str | int, ...]], ...] = ()
    #: column → (low, high) that SUM and AVG clamp each value to
    bounds: tuple[tuple[str, tuple[float, float]], ...] = ()

    @property
    def private(self) -> bool:
        return self.epsilon > 0


@dataclass(frozen=True)
class InputDataset:
    dataset_name: str
    view_name: str


@dataclass(frozen=True)
class Query:
    segments: tuple[Segment, ...]
    input_datasets: tuple[InputDataset, ...]
    output_datasink: str

    def datasets_by_view(self, datasets: Mapping[str, Dataset]) -> dict[str, Dataset]:
        """The query's views and the datasets behind them; an unknown dataset is refused by name."""
        unknown = [i.dataset_name for i in self.input_datasets if i.dataset_name not in datasets]
        if unknown:
            raise BadRequest(f"the query reads dataset {unknown[0]!r}, which does not exist", code="UnknownDataset")
        return {i.view_name.lower(): datasets[i.dataset_name] for i in self.input_datasets}

    @property
    def epsilon(self) -> int:
        """The ε the query spends per run, in millionths: its private segments' in sum."""
        return sum(segment.epsilon for segment in self.segments)


class PrivacyRefused(BadRequest):
    code = "PrivacyRefused"


def privacy_spend(query: Query, datasets: Mapping[str, Dataset]) -> dict[str, int]:
    """What one run of `query` spends from each dataset's budget (millionths of ε), after checking the owners'
    policies; empty for a query over datasets without one.

    Every segment of a query that reads a dataset with a privacy policy must be private (otherwise its
    exact answer would sidestep the budget), and the query's whole ε is charged to every such dataset it
    reads, whichever segment reads which: conservative, and computable from the documents alone, so CGS
    and the room agree on it without parsing SQL. The strictest owner wins: the ε must fit each one's
    per-query maximum."""
    guarded = [datasets[i.dataset_name] for i in query.input_datasets
               if i.dataset_name in datasets and datasets[i.dataset_name].privacy is not None]
    if not guarded:
        return {}
    for segment in query.segments:
        if not segment.private:
            raise PrivacyRefused(f"segment {segment.execution_sequence} is not private, and dataset "
                                 f"{guarded[0].name!r} allows private segments only (set private and epsilon)")
    spend = query.epsilon
    for dataset in guarded:
        assert dataset.privacy is not None
        most = dataset.privacy.per_query_epsilon_max
        if spend > most:
            raise PrivacyRefused(f"the query spends epsilon {format_epsilon(spend)} per run; dataset "
                                 f"{dataset.name!r} allows at most {format_epsilon(most)}")
    return {dataset.name: spend for dataset in guarded}


@dataclass(frozen=True)
class BudgetGrant:
    """An owner's raise of a dataset's privacy budget: ε added to the dataset document's `epsilonTotal`.
    Accepted documents never change (as in CGS), so a raise is a document of its own, decided by the owner."""

    dataset: str
    epsilon: int


def parse_budget_grant(text: str | bytes) -> BudgetGrant:
    source = "budget document"
    problems: list[str] = []
    doc = _Fields(_load(text, source), "", problems, {"dataset", "epsilon"})
    dataset = doc.text("dataset", _NAME)
    epsilon = _epsilon(doc, "epsilon", problems)
    if problems:
        raise AnalyticsDocumentError(problems, source)
    assert dataset and epsilon
    return BudgetGrant(dataset, epsilon)


def format_epsilon(units: int) -> str:
    return f"{units / EPSILON_UNITS:.6f}".rstrip("0").rstrip(".") or "0"


class _Fields:
    """Reads one JSON object's fields, collecting problems under a path instead of stopping at the first."""

    def __init__(self, value: Any, path: str, problems: list[str], known: set[str]):
        self.path = path
        self.problems = problems
        self.obj: dict[str, Any] = value if isinstance(value, dict) else {}
        if not isinstance(value, dict):
            problems.append(f"{path or 'document'}: must be an object")
        for key in sorted(set(self.obj) - known):
            problems.append(f"{self._at(key)}: unknown field")

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def text(self, key: str, pattern: re.Pattern[str] | None = None, *, required: bool = True,
             max_chars: int = 256) -> str | None:
        value = self.obj.get(key)
        if value is None:
            if required:
                self.problems.append(f"{self._at(key)}: is required")
            return None
        if not isinstance(value, str) or not value:
            self.problems.append(f"{self._at(key)}: must be a non-empty string")
            return None
        if len(value) > max_chars:
            self.problems.append(f"{self._at(key)}: is longer than {max_chars} characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problems.append(f"{self._at(key)}: {value[:64]!r} is not a plain name ({pattern.pattern})")
            return None
        return value

    def choice(self, key: str, choices: frozenset[str], default: str | None = None) -> str | None:
        value = self.obj.get(key, default)
        # a JSON array or object is unhashable: test the type before membership
        if not isinstance(value, str) or value not in choices:
            self.problems.append(f"{self._at(key)}: must be one of {', '.join(sorted(choices))}")
            return None
        return value

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.obj.get(key, default)
        # bool is an int in Python; JSON's true is not a count
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.problems.append(f"{self._at(key)}: must be an integer from {low} to {high}")
            return None
        return value

    def array(self, key: str, max_items: int, *, required: bool = True) -> list[Any]:
        value = self.obj.get(key)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (required and not value):
            self.problems.append(f"{self._at(key)}: must be a non-empty array")
            return []
        if len(value) > max_items:
            self.problems.append(f"{self._at(key)}: has more than {max_items} items")
            return []
        return value


def _load(text: str | bytes, source: str) -> Any:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return load_json(text, DOCUMENT_LIMITS)
    except UnicodeDecodeError:
        raise AnalyticsDocumentError(["is not UTF-8 text"], source) from None
    except UntrustedInputError as exc:
        raise AnalyticsDocumentError([str(exc)], source) from None


def _unique(names: list[str], path: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            problems.append(f"{path}: {name!r} appears twice (names are compared ignoring case)")
        seen.add(name.lower())


def parse_dataset(text: str | bytes) -> Dataset:
    source = "dataset document"
    problems: list[str] = []
    doc = _Fields(_load(text, source), "", problems, {
        "name", "owner", "store", "container", "format", "schema", "allowedFields", "accessMode",
        "aggregationThreshold", "encryption", "privacy"})
    name = doc.text("name", _NAME)
    owner = doc.text("owner", _NAME)
    store = doc.text("store", _NAME)
    container = doc.text("container", _NAME)
    data_format = doc.choice("format", FORMATS)
    columns: list[Column] = []
    for index, item in enumerate(doc.array("schema", MAX_COLUMNS)):
        field = _Fields(item, f"schema[{index}]", problems, {"name", "type"})
        column_name = field.text("name", _IDENTIFIER)
        column_type = field.choice("type", SPARK_TYPES)
        if column_name and column_type:
            columns.append(Column(column_name, column_type))
    _unique([c.name for c in columns], "schema", problems)
    known = {c.name.lower() for c in columns}
    allowed: list[str] = []
    for index, item in enumerate(doc.array("allowedFields", MAX_COLUMNS)):
        if not isinstance(item, str) or item.lower() not in known:
            problems.append(f"allowedFields[{index}]: {str(item)[:64]!r} is not a column of the schema")
        else:
            allowed.append(item)
    _unique(allowed, "allowedFields", problems)
    access_mode = doc.choice("accessMode", ACCESS_MODES)
    threshold = doc.integer("aggregationThreshold", 1, MAX_THRESHOLD,
                            default=DEFAULT_THRESHOLD.get(access_mode or "row"))
    encryption = _parse_encryption(doc.obj.get("encryption"), problems)
    privacy = None
    if doc.obj.get("privacy") is not None:
        privacy = _parse_privacy(doc.obj["privacy"], {c.lower() for c in allowed}, problems)
    if problems:
        raise AnalyticsDocumentError(problems, source)
    assert name and owner and store and container and data_format and access_mode and threshold and encryption
    return Dataset(name, owner, store, container, data_format, tuple(columns), tuple(allowed),
                   access_mode, threshold, encryption, privacy)  # type: ignore[arg-type]


def _parse_privacy(value: Any, allowed: set[str], problems: list[str]) -> Privacy | None:
    before = len(problems)
    fields = _Fields(value, "privacy", problems, {
        "epsilonTotal", "delta", "perQueryEpsilonMax", "contributionBound", "personKey"})
    total = _epsilon(fields, "epsilonTotal", problems, allow_zero=True)
    per_query = _epsilon(fields, "perQueryEpsilonMax", problems)
    delta = fields.obj.get("delta", 0.0)
    if not isinstance(delta, int | float) or isinstance(delta, bool) or not 0.0 <= delta < 1e-3:
        problems.append("privacy.delta: must be a number from 0 to below 0.001")
        delta = None
    bound = fields.integer("contributionBound", 1, MAX_CONTRIBUTION_BOUND)
    person_key = fields.text("personKey", _IDENTIFIER)
    if person_key and person_key.lower() not in allowed:
        # the room bounds contributions by this column inside the view, which holds only allowed fields
        problems.append(f"privacy.personKey: {person_key!r} is not one of allowedFields")
    if len(problems) > before or total is None or per_query is None or bound is None or not person_key:
        return None
    return Privacy(total, float(delta), per_query, bound, person_key)  # type: ignore[arg-type]


def _epsilon(fields: _Fields, key: str, problems: list[str], *, allow_zero: bool = False) -> int | None:
    """A JSON number of ε as millionths; more precision than that is refused, not rounded away."""
    value = fields.obj.get(key)
    at = f"{fields.path}.{key}" if fields.path else key
    if value is None:
        problems.append(f"{at}: is required")
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not (
            0 <= value <= MAX_EPSILON if allow_zero else 0 < value <= MAX_EPSILON):
        problems.append(f"{at}: must be a number {'from 0' if allow_zero else 'above 0'} up to {MAX_EPSILON:g}")
        return None
    units = round(value * EPSILON_UNITS)
    if abs(units - value * EPSILON_UNITS) > 1e-6 * max(1.0, value * EPSILON_UNITS) or (units == 0 and not allow_zero):
        problems.append(f"{at}: at most 6 decimal places")
        return None
    return units


def _parse_encryption(value: Any, problems: list[str]) -> Encryption | None:
    fields = _Fields(value, "encryption", problems, {"mode", "dekSecret", "kekName"})
    mode = fields.choice("mode", ENCRYPTION_MODES, default="CSE")
    dek = fields.text("dekSecret", _NAME, required=mode in ("CSE", "CPK", "SSE-C"))
    kek = fields.text("kekName", _NAME, required=mode == "CSE")
    if mode == "SSE" and (dek or kek):
        problems.append("encryption: SSE keys are the storage service's own; dekSecret and kekName must be absent")
    if mode in ("CPK", "SSE-C") and kek:
        problems.append(f"encryption.kekName: {mode} hands the storage service the key itself; there is nothing "
                        "to wrap")
    return Encryption(mode, dek, kek) if mode else None  # type: ignore[arg-type]


def parse_query(text: str | bytes) -> Query:
    source = "query document"
    problems: list[str] = []
    doc = _Fields(_load(text, source), "", problems, {"segments", "inputDatasets", "outputDataset"})
    inputs: list[InputDataset] = []
    for index, item in enumerate(doc.array("inputDatasets", 64)):
        field = _Fields(item, f"inputDatasets[{index}]", problems, {"datasetName", "viewName"})
        dataset_name = field.text("datasetName", _NAME)
        view_name = field.text("viewName", _IDENTIFIER)
        if dataset_name and view_name:
            inputs.append(InputDataset(dataset_name, view_name))
    _unique([i.view_name for i in inputs], "inputDatasets.viewName", problems)
    _unique([i.dataset_name for i in inputs], "inputDatasets.datasetName", problems)
    views = {i.view_name.lower() for i in inputs}
    segments: list[Segment] = []
    for index, item in enumerate(doc.array("segments", MAX_SEGMENTS)):
        segment = _parse_segment(item, f"segments[{index}]", views, problems)
        if segment:
            segments.append(segment)
    output = _Fields(doc.obj.get("outputDataset"), "outputDataset", problems, {"datasinkName"})
    datasink = output.text("datasinkName", _NAME)
    if problems:
        raise AnalyticsDocumentError(problems, source)
    assert datasink
    return Query(tuple(sorted(segments, key=lambda s: s.execution_sequence)), tuple(inputs), datasink)


def _parse_segment(value: Any, path: str, views: set[str], problems: list[str]) -> Segment | None:
    before = len(problems)
    fields = _Fields(value, path, problems, {"executionSequence", "sql", "preConditions", "postFilters",
                                             "private", "epsilon", "publicKeys", "bounds"})
    sequence = fields.integer("executionSequence", 1, 1000)
    sql = fields.text("sql", max_chars=MAX_SQL_CHARS)
    epsilon, public_keys, bounds = _parse_private(fields, path, problems)
    preconditions: list[PreCondition] = []
    for index, item in enumerate(fields.array("preConditions", 64, required=False)):
        at = f"{path}.preConditions[{index}]"
        pre = _Fields(item, at, problems, {"viewName", "minRowCount"})
        view = pre.text("viewName", _IDENTIFIER)
        count = pre.integer("minRowCount", 0, 2**62)
        if view and view.lower() not in views:
            problems.append(f"{at}.viewName: {view!r} is not a view of the query's inputDatasets")
        elif view and count is not None:
            preconditions.append(PreCondition(view, count))
    filters: list[PostFilter] = []
    for index, item in enumerate(fields.array("postFilters", 64, required=False)):
        post = _Fields(item, f"{path}.postFilters[{index}]", problems, {"columnName", "value"})
        column = post.text("columnName", _IDENTIFIER)
        minimum = post.integer("value", -(2**62), 2**62)
        if column and minimum is not None:
            filters.append(PostFilter(column, minimum))
    if epsilon and preconditions:
        # a pre-condition answers "at least N rows?" exactly: one bit per run that no budget accounts for
        problems.append(f"{path}.preConditions: a private segment has none (a row count is exact, not private)")
    if len(problems) > before or sequence is None or sql is None:
        return None
    return Segment(sequence, sql, tuple(preconditions), tuple(filters), epsilon, public_keys, bounds)


def _parse_private(fields: _Fields, path: str, problems: list[str]
                   ) -> tuple[int, tuple[tuple[str, tuple[str | int, ...]], ...],
                              tuple[tuple[str, tuple[float, float]], ...]]:
    private = fields.obj.get("private", False)
    if not isinstance(private, bool):
        problems.append(f"{path}.private: must be true or false")
        return 0, (), ()
    if not private:
        for key in ("epsilon", "publicKeys", "bounds"):
            if key in fields.obj:
                problems.append(f"{path}.{key}: only a private segment has it (set private: true)")
        return 0, (), ()
    epsilon = _epsilon(fields, "epsilon", problems) or 0
    keys_value = fields.obj.get("publicKeys", {})
    public_keys: list[tuple[str, tuple[str | int, ...]]] = []
    if not isinstance(keys_value, dict):
        problems.append(f"{path}.publicKeys: must be an object of column → array of values")
        keys_value = {}
    cells = 1
    for column, values in keys_value.items():
        at = f"{path}.publicKeys.{str(column)[:64]}"
        if not _IDENTIFIER.fullmatch(column):
            problems.append(f"{at}: is not a plain column name")
        elif not isinstance(values, list) or not 0 < len(values) <= MAX_PUBLIC_KEYS or not all(
                isinstance(v, str | int) and not isinstance(v, bool) and not (isinstance(v, str) and len(v) > 256)
                for v in values):
            problems.append(f"{at}: must be 1 to {MAX_PUBLIC_KEYS} strings or integers")
        elif len({json_key(v) for v in values}) != len(values):
            problems.append(f"{at}: a value appears twice")
        else:
            cells *= len(values)
            public_keys.append((column, tuple(values)))
    _unique([c for c, _ in public_keys], f"{path}.publicKeys", problems)
    if cells > MAX_PUBLIC_CELLS:
        problems.append(f"{path}.publicKeys: {cells} combinations, more than {MAX_PUBLIC_CELLS}")
    bounds_value = fields.obj.get("bounds", {})
    bounds: list[tuple[str, tuple[float, float]]] = []
    if not isinstance(bounds_value, dict):
        problems.append(f"{path}.bounds: must be an object of column → [low, high]")
        bounds_value = {}
    for column, pair in bounds_value.items():
        at = f"{path}.bounds.{str(column)[:64]}"
        numbers = isinstance(pair, list) and len(pair) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and abs(v) <= 1e12 for v in pair)
        if not _IDENTIFIER.fullmatch(column):
            problems.append(f"{at}: is not a plain column name")
        elif not numbers or not pair[0] < pair[1]:
            problems.append(f"{at}: must be [low, high] numbers with low < high, within ±1e12")
        else:
            bounds.append((column, (float(pair[0]), float(pair[1]))))
    _unique([c for c, _ in bounds], f"{path}.bounds", problems)
    return epsilon, tuple(public_keys), tuple(bounds)


def json_key(value: str | int) -> str:
    """A public key value as one comparable text (1 and "1" differ: the column's type decides which is meant)."""
    return f"{type(value).__name__}:{value}"
