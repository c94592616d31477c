"""The analytics engine: a query's segments run in Spark SQL (local mode) over views that carry only what
the datasets' owners allow, with the room's guards applied around the SQL.

One `Engine` holds one warm SparkSession (the JVM start is most of a cold run). Each run gets its own
child session (`newSession`: the same JVM and SparkContext, its own temp views), so concurrent runs
cannot see each other's views.

A run, in order (nothing reaches `output_dir` until every step has passed):
1. views: each input's files are listed (links refused, date-range folders applied), CSV headers and
   parquet schemas checked against the document, and a temp view made of the `allowedFields` plus
   `ROW_ID_COLUMN`; files are read with the document's schema in FAILFAST mode;
2. every segment's SQL passes `check_segment` and gets its aggregation threshold, before any SQL runs;
3. pre-conditions: `COUNT(*)` of each named view against `minRowCount`, before any SQL runs;
4. each segment, in executionSequence order, is computed into `scratch/<run_id>/` as one CSV file, its
   post-filters applied, suppressed groups counted (the SQL without the threshold, counted);
5. only then each file is copied to `output_dir/<run_id>/segment-<seq>.csv`: written in full, then closed
   (a sink's FUSE commits an object on close and has no rename). `cancelled` is checked before each file.

A private segment (`dp.py`) takes step 4 differently: its bounded exact aggregates over the public key set
are collected into this process and only their noisy release is written (no threshold, no row counts).

Error text from Spark is never passed on as it is: a runtime error can quote a row's value (a failed CAST
names it), so only its error class is reported; a read failure becomes `SchemaMismatch` naming the file
and the column (found by re-reading that one file a column at a time).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import re
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType

from py4j.protocol import Py4JError
from pyspark import StorageLevel
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..common.errors import BadRequest, CcrError, Conflict
from .datafiles import (
    DataFile,
    DateRange,
    SchemaMismatch,
    UnsafeDatasetFile,
    check_csv_header,
    list_files,
    printable,
    spark_path,
)
from .documents import Dataset, Query, Segment, privacy_spend
from .dp import PrivatePlan, plan_private, release, write_csv
from .sqlguard import DIALECT, ROW_ID_COLUMN, check_segment, with_aggregation_threshold

__all__ = [
    "DatasetSource", "Engine", "PreconditionFailed", "RunCancelled", "RunResult", "SchemaMismatch",
    "SegmentOutput", "SparkFailure", "UnsafeDatasetFile",
]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ERROR_CLASS = re.compile(r"\[([A-Z][A-Z0-9_]+(?:\.[A-Z0-9_]+)*)\]")
_FAILED_FILE = re.compile(r"\[FAILED_READ_FILE[A-Z_.]*\] Encountered error while reading file (\S+?)\.?\s")
_COPY_CHUNK = 1024 * 1024
_CANCEL_TICK = 0.2
#: column-by-column re-reads to name the culprit of a read failure: beyond this, the file alone is named
_MAX_COLUMNS_TO_LOCATE = 64

#: the loggers that print a failed task's exception (with the value it failed on) or its stack trace
_TASK_FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor", "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.scheduler.DAGScheduler", "org.apache.spark.sql.execution.datasources.FileFormatWriter",
    "org.apache.spark.util.Utils",
)
#: defaults the caller's `conf` may change: Spark's 200 shuffle partitions cost seconds on a small query in
#: local mode (adaptive execution still merges small ones on a large query)
_DEFAULT_CONF = {
    "spark.sql.shuffle.partitions": "8",
    # Hadoop reads local files 4 KiB at a time; through a FUSE mount every read is a round trip to the
    # decrypting daemon: 1 MiB reads took the 250 MB benchmark query from ≈10 s to ≈7 s
    "spark.hadoop.io.file.buffer.size": str(1024 * 1024),
}
#: the session's settings; the caller's `conf` may add to them but not change these
_FIXED_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.io.encryption.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.catalogImplementation": "in-memory",
    # `SELECT * FROM csv.`/path`` would read any file the JVM can; sqlguard refuses it, this backs it up
    "spark.sql.runSQLOnFiles": "false",
}


class PreconditionFailed(BadRequest):
    code = "PreconditionFailed"


class RunCancelled(CcrError):
    code = "RunCancelled"
    http_status = 409


class SparkFailure(CcrError):
    """The Spark job failed for a reason other than the data's shape (the message names the error class)."""

    code = "SparkJobFailed"


@dataclass(frozen=True)
class DatasetSource:
    dataset: Dataset
    view_name: str
    root: Path


@dataclass(frozen=True)
class SegmentOutput:
    execution_sequence: int
    path: str
    rows_written: int
    groups_suppressed: int
    rows_filtered: int


@dataclass(frozen=True)
class RunResult:
    segments: tuple[SegmentOutput, ...]
    timings: dict[str, float]


@dataclass(frozen=True)
class _PlannedSegment:
    segment: Segment
    sql: str
    #: the same SQL without the aggregation threshold, or None when the threshold changed nothing
    unguarded_sql: str | None
    #: a private segment's plan (`sql` is then its exact, contribution-bounded aggregates, released noisy)
    private: PrivatePlan | None = None


@dataclass
class _Run:
    run_id: str
    session: SparkSession
    sources: dict[str, DatasetSource]
    files: dict[str, list[DataFile]] = field(default_factory=dict)


class Engine:
    def __init__(self, scratch: Path, *, master: str = "local[2]",
                 conf: Mapping[str, str] = MappingProxyType({})) -> None:
        self.scratch = Path(scratch)
        self.master = master
        self.conf = dict(conf)
        self._session: SparkSession | None = None
        self._lock = threading.Lock()
        #: runs in progress, and those of them asked to stop
        self._active: set[str] = set()
        self._cancelled: set[str] = set()

    # --- the session ------------------------------------------------------------------------------------

    def start(self) -> float:
        """Start the SparkSession (JVM) if it is not running; the seconds this took (0 when warm)."""
        with self._lock:
            if self._session is not None:
                return 0.0
            started = time.perf_counter()
            self.scratch.mkdir(parents=True, exist_ok=True)
            builder = SparkSession.builder.master(self.master).appName("ccr-analytics")
            local_dir = str(self.scratch / "spark-local")
            settings = {**_DEFAULT_CONF, **self.conf, **_FIXED_CONF, "spark.local.dir": local_dir}
            for key, value in settings.items():
                builder = builder.config(key, value)
            session = builder.getOrCreate()
            session.sparkContext.setLogLevel("WARN")
            # py4j logs every connection it opens and closes at INFO, some from __del__ at interpreter exit
            # (after logging's streams are closed: "I/O operation on closed file" noise)
            logging.getLogger("py4j").setLevel(logging.WARNING)
            _silence_task_failures(session)
            self._session = session
            return time.perf_counter() - started

    def stop(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.stop()
                self._session = None

    def cancel(self, run_id: str) -> None:
        """Cancel the run's Spark jobs (from any thread); the run ends with RunCancelled."""
        with self._lock:
            if run_id not in self._active:
                return  # a finished (or unknown) run: nothing to stop, and its id must stay usable
            self._cancelled.add(run_id)
            session = self._session
        if session is not None:
            session.sparkContext.cancelJobGroup(run_id)
        # a job started after this call is cancelled by the run's watcher (`_cancel_when_asked`)

    # --- a run --------------------------------------------------------------------------------------------

    def run(self, query: Query, sources: Sequence[DatasetSource], output_dir: Path, *, run_id: str,
            cancelled: threading.Event | None = None,
            date_range: tuple[date | None, date | None] = (None, None)) -> RunResult:
        if not _RUN_ID.fullmatch(run_id):
            raise BadRequest(f"run id {printable(run_id)[:64]!r} is not a plain name ({_RUN_ID.pattern})")
        timings: dict[str, float] = {}
        session_seconds = self.start()
        if session_seconds:
            timings["session"] = session_seconds
        assert self._session is not None
        by_view = _sources_by_view(query, sources)
        with self._lock:
            if run_id in self._active:
                raise Conflict(f"run {run_id} is already running")
            self._active.add(run_id)
        work = self.scratch / "runs" / run_id
        run = _Run(run_id, self._session.newSession(), by_view)
        done = threading.Event()
        threading.Thread(target=self._cancel_when_asked, args=(run_id, cancelled, done), daemon=True,
                         name=f"cancel-{run_id}").start()
        try:
            # left by a run of the same id that died with the process
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            run.session.sparkContext.setJobGroup(run_id, f"analytics run {run_id}", interruptOnCancel=True)
            # the SQL guards need only the documents: a refused segment costs no file read and no Spark job
            planned = _plan(query, by_view)
            if any(plan.private for plan in planned):
                # ANSI mode fails a job on a value (a bad cast, a division by zero): for a private run that
                # failure would be an exact answer about the data; without it such values become NULL
                run.session.conf.set("spark.sql.ansi.enabled", "false")
            with _timed(timings, "views"):
                self._check_cancelled(run_id, cancelled)
                self._make_views(run, date_range)
            with _timed(timings, "preconditions"):
                self._check_preconditions(run, query, cancelled)
            outputs: list[tuple[SegmentOutput, Path]] = []
            with _timed(timings, "sql"):
                for plan in planned:
                    self._check_cancelled(run_id, cancelled)
                    outputs.append(self._compute(run, plan, work))
            with _timed(timings, "write"):
                self._publish(run_id, outputs, output_dir, cancelled)
            return RunResult(tuple(output for output, _ in outputs), timings)
        except (Py4JError, PySparkException) as exc:
            if self._is_cancelled(run_id, cancelled):
                raise RunCancelled(f"run {run_id} was cancelled; nothing was written") from None
            raise self._explain(run, exc) from None
        finally:
            done.set()
            # a worker thread serves the next run too: its jobs must not carry this run's group (a session
            # stopped under the run has nothing left to clear)
            with contextlib.suppress(Py4JError):
                run.session.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
            shutil.rmtree(work, ignore_errors=True)
            with self._lock:
                self._cancelled.discard(run_id)
                self._active.discard(run_id)

    def _cancel_when_asked(self, run_id: str, cancelled: threading.Event | None, done: threading.Event) -> None:
        # Cancelling a job group stops only the jobs running at that moment: a cancel that falls between two
        # jobs (or before the first) would let the next one run to its end. Until the run returns, its group
        # is cancelled again every tick once asked, so the next job dies as it starts.
        while not done.wait(_CANCEL_TICK):
            if self._is_cancelled(run_id, cancelled):
                with self._lock:
                    session = self._session
                if session is not None:
                    session.sparkContext.cancelJobGroup(run_id)

    def _is_cancelled(self, run_id: str, cancelled: threading.Event | None) -> bool:
        with self._lock:
            return run_id in self._cancelled or bool(cancelled and cancelled.is_set())

    def _check_cancelled(self, run_id: str, cancelled: threading.Event | None) -> None:
        if self._is_cancelled(run_id, cancelled):
            raise RunCancelled(f"run {run_id} was cancelled; nothing was written")

    # --- views --------------------------------------------------------------------------------------------

    def _make_views(self, run: _Run, date_range: DateRange) -> None:
        for view, source in run.sources.items():
            dataset = source.dataset
            files = list_files(dataset, source.root, date_range)
            run.files[view] = files
            if dataset.format == "csv":
                for data_file in files:
                    check_csv_header(dataset, data_file)
            elif dataset.format == "parquet":
                for data_file in files:
                    self._check_parquet_schema(run.session, dataset, data_file)
            frame = _read(run.session, dataset, [spark_path(f.path) for f in files])
            allowed = [F.col(f"`{column.name}`") for column in dataset.allowed_columns()]
            frame.select(*allowed, F.monotonically_increasing_id().alias(ROW_ID_COLUMN)) \
                .createOrReplaceTempView(view)

    @staticmethod
    def _check_parquet_schema(session: SparkSession, dataset: Dataset, data_file: DataFile) -> None:
        where = f"dataset {dataset.name!r}, file {printable(data_file.relative)}"
        try:
            found = {f.name.lower(): f.dataType.simpleString()
                     for f in session.read.parquet(spark_path(data_file.path)).schema.fields}
        except PySparkException:
            raise SchemaMismatch(f"{where}: is not a parquet file") from None
        for column in dataset.schema:
            got = found.get(column.name.lower())
            if got is None:
                raise SchemaMismatch(f"{where}: has no column {column.name!r}")
            if got.split("(")[0] != column.type:
                raise SchemaMismatch(f"{where}: column {column.name!r} is {got}, the schema says {column.type}")

    def _check_preconditions(self, run: _Run, query: Query, cancelled: threading.Event | None) -> None:
        counts: dict[str, int] = {}
        for segment in query.segments:
            for pre in segment.pre_conditions:
                view = pre.view_name.lower()
                if view not in counts:
                    self._check_cancelled(run.run_id, cancelled)
                    counts[view] = run.session.table(view).count()
                if counts[view] < pre.min_row_count:
                    raise PreconditionFailed(
                        f"segment {segment.execution_sequence}: view {pre.view_name} "
                        f"(dataset {run.sources[view].dataset.name!r}) has {counts[view]} rows, the "
                        f"pre-condition needs at least {pre.min_row_count}")

    # --- segments -----------------------------------------------------------------------------------------

    def _compute(self, run: _Run, plan: _PlannedSegment, work: Path) -> tuple[SegmentOutput, Path]:
        sequence = plan.segment.execution_sequence
        if plan.private is not None:
            return self._compute_private(run, plan.private, work)
        result = run.session.sql(plan.sql)
        keep = _post_filter_condition(plan.segment, result)
        if keep is not None:
            result.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            # without post-filters the rows written are the total: no second pass over the result
            total = result.count() if keep is not None else None
            folder = work / f"segment-{sequence}"
            (result.filter(keep) if keep is not None else result).coalesce(1).write \
                .option("header", "true").option("escape", '"').csv(str(folder))
        finally:
            if keep is not None:
                result.unpersist()
        parts = sorted(folder.glob("part-*.csv"))
        if len(parts) != 1:
            raise SparkFailure(f"segment {sequence}: Spark wrote {len(parts)} result files, not one")
        part = parts[0]
        rows = _count_csv_rows(part)
        total = rows if total is None else total
        suppressed = 0
        if plan.unguarded_sql is not None:
            suppressed = run.session.sql(plan.unguarded_sql).count() - total
        output = SegmentOutput(sequence, f"{run.run_id}/segment-{sequence}.csv", rows, suppressed, total - rows)
        return output, part

    @staticmethod
    def _compute_private(run: _Run, plan: PrivatePlan, work: Path) -> tuple[SegmentOutput, Path]:
        """The exact aggregates stay in this process: only their noisy release is written. The counts reported
        are of released cells (the public key set after post-filters on noisy values), not of data rows."""
        exact = [row.asDict() for row in run.session.sql(plan.sql).collect()]
        released = release(plan, exact)
        part = work / f"segment-{plan.sequence}" / "part-00000.csv"
        write_csv(part, plan, released)
        output = SegmentOutput(plan.sequence, f"{run.run_id}/segment-{plan.sequence}.csv", len(released), 0,
                               len(plan.cells) - len(released))
        return output, part

    def _publish(self, run_id: str, outputs: list[tuple[SegmentOutput, Path]], output_dir: Path,
                 cancelled: threading.Event | None) -> None:
        folder = Path(output_dir) / run_id
        folder.mkdir(parents=True, exist_ok=True)
        for output, part in outputs:
            self._check_cancelled(run_id, cancelled)
            target = Path(output_dir) / output.path
            try:
                destination = open(target, "xb")  # noqa: SIM115 - closed below, after the last byte
            except FileExistsError:
                raise Conflict(f"run {run_id}: {output.path} already exists in the sink") from None
            try:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, destination, _COPY_CHUNK)
            except BaseException:
                destination.close()
                target.unlink(missing_ok=True)
                raise
            destination.close()

    # --- errors -------------------------------------------------------------------------------------------

    def _explain(self, run: _Run, exc: Exception) -> CcrError:
        text = str(exc)
        failed_file = _FAILED_FILE.search(text)
        if failed_file:
            return self._locate_mismatch(run, failed_file.group(1))
        error_class = _error_class(exc, text)
        if isinstance(exc, AnalysisException):
            # analysis happens before any row is read: its first line names SQL, not data
            first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else error_class
            return BadRequest(f"Spark refused the SQL: {printable(first)[:300]}", code="SqlRefused")
        return SparkFailure(f"the Spark job failed: {error_class} (details withheld: they may quote data)")

    def _locate_mismatch(self, run: _Run, uri: str) -> SchemaMismatch:
        """Which file (from Spark's message) and which column (re-reading that file a column at a time)."""
        for view, files in run.files.items():
            dataset = run.sources[view].dataset
            for data_file in files:
                if not uri.endswith(str(data_file.path)) and not uri.endswith(_uri_path(data_file.path)):
                    continue
                where = f"dataset {dataset.name!r}, file {printable(data_file.relative)}"
                column = _culprit_column(run.session, dataset, data_file)
                if column is None:
                    return SchemaMismatch(f"{where}: a row does not match the schema")
                return SchemaMismatch(f"{where}: a value of column {column.name!r} is not a {column.type}")
        return SchemaMismatch("a dataset file does not match its schema")


def _silence_task_failures(session: SparkSession) -> None:
    """A failed task's log lines quote the row that failed it (`For input string: "<value>"`), and the room's
    logs may leave the room: the loggers that print task failures are turned off. The run's error (its
    class only) is what reports a failure."""
    # pyspark logs each captured exception, message included, from the Python side too
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL + 1)
    jvm = session.sparkContext._jvm
    assert jvm is not None
    off = jvm.org.apache.logging.log4j.Level.OFF
    for logger in _TASK_FAILURE_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(logger, off)


def _sources_by_view(query: Query, sources: Sequence[DatasetSource]) -> dict[str, DatasetSource]:
    by_view = {source.view_name.lower(): source for source in sources}
    if len(by_view) != len(sources):
        raise BadRequest("two dataset sources have the same view name")
    for wanted in query.input_datasets:
        source = by_view.get(wanted.view_name.lower())
        if source is None or source.dataset.name != wanted.dataset_name:
            raise BadRequest(f"the query's view {wanted.view_name} (dataset {wanted.dataset_name!r}) has no "
                             "matching dataset source", code="UnknownDataset")
    if len(by_view) != len(query.input_datasets):
        raise BadRequest("a dataset source is not one of the query's inputDatasets")
    return by_view


def _plan(query: Query, sources: Mapping[str, DatasetSource]) -> list[_PlannedSegment]:
    views = {view: source.dataset for view, source in sources.items()}
    # the prepare phase checked this already; a caller of the engine alone must not get around it either
    privacy_spend(query, {source.dataset.name: source.dataset for source in sources.values()})
    planned = []
    for segment in query.segments:
        if segment.private:
            private = plan_private(segment, views)
            planned.append(_PlannedSegment(segment, private.sql, None, private))
            continue
        checked = check_segment(segment.sql, views)
        guarded = with_aggregation_threshold(checked, views)
        plain = checked.sql(dialect=DIALECT)
        planned.append(_PlannedSegment(segment, guarded, plain if plain != guarded else None))
    return planned


def _read(session: SparkSession, dataset: Dataset, paths: list[str]) -> DataFrame:
    schema = ", ".join(f"`{column.name}` {column.type}" for column in dataset.schema)
    if not paths:
        return session.createDataFrame([], schema)
    reader = session.read.schema(schema).option("mode", "FAILFAST")
    if dataset.format == "csv":
        return reader.option("header", "true").option("escape", '"').csv(paths)
    if dataset.format == "json":
        return reader.json(paths)
    return reader.parquet(*paths)


def _post_filter_condition(segment: Segment, result: DataFrame):
    """Rows kept: each filter's column ≥ its value (a NULL is not ≥, so it is dropped too)."""
    columns = {name.lower(): name for name in result.columns}
    keep = None
    for post in segment.post_filters:
        name = columns.get(post.column_name.lower())
        if name is None:
            raise BadRequest(f"segment {segment.execution_sequence}: post-filter column {post.column_name!r} "
                             f"is not a column of its result ({', '.join(result.columns)})",
                             code="InvalidPostFilter")
        condition = F.coalesce(F.col(f"`{name}`") >= F.lit(post.value), F.lit(False))
        keep = condition if keep is None else keep & condition
    return keep


def _count_csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as stream:
        return max(sum(1 for _ in csv.reader(stream)) - 1, 0)


def _culprit_column(session: SparkSession, dataset: Dataset, data_file: DataFile):
    """The first column whose values Spark cannot read as the schema's type in this one file."""
    if len(dataset.schema) > _MAX_COLUMNS_TO_LOCATE:
        return None
    for column in dataset.schema:
        if column.type == "string":
            continue
        schema = ", ".join(f"`{c.name}` {c.type if c is column else 'string'}" for c in dataset.schema)
        try:
            _read_with(session, dataset, schema, data_file).select(
                F.max(F.col(f"`{column.name}`").isNull().cast("int"))).collect()
        except (Py4JError, PySparkException):
            return column
    return None


def _read_with(session: SparkSession, dataset: Dataset, schema: str, data_file: DataFile) -> DataFrame:
    reader = session.read.schema(schema).option("mode", "FAILFAST")
    path = spark_path(data_file.path)
    if dataset.format == "csv":
        return reader.option("header", "true").option("escape", '"').csv(path)
    if dataset.format == "json":
        return reader.json(path)
    return reader.parquet(path)


def _uri_path(path: Path) -> str:
    return path.as_uri().removeprefix("file://")


def _error_class(exc: Exception, text: str) -> str:
    if isinstance(exc, PySparkException):
        try:
            condition = exc.getCondition()
        except Exception:  # noqa: BLE001 - a Py4J failure here must not hide the original error
            condition = None
        if condition:
            return condition
    match = _ERROR_CLASS.search(text)
    return match.group(1) if match else type(exc).__name__


class _timed:
    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.started
