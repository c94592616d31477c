"""The analytics engine against real Spark: every answer is checked against the same SQL run by sqlite on the
clear rows, and every guard is attacked (a hidden column asked for, a small group, a header that lies, a
link out of the dataset, a run cancelled mid-job) and must refuse with nothing written to the sink."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from sidecars.analytics.documents import parse_dataset, parse_query
from sidecars.analytics.engine import (
    DatasetSource,
    PreconditionFailed,
    RunCancelled,
    SchemaMismatch,
    SparkFailure,
    UnsafeDatasetFile,
)
from sidecars.analytics.sqlguard import SqlRefused
from sidecars.common.errors import BadRequest

REPO = Path(__file__).resolve().parents[3]

# the session fixture starts the JVM once; each test here then runs a few small Spark jobs (≈1 s)
pytestmark = pytest.mark.slow

SALES_COLUMNS = [("id", "int"), ("region", "string"), ("amount", "int"), ("email", "string")]
CUSTOMER_COLUMNS = [("id", "int"), ("segment", "string"), ("score", "int"), ("ssn", "string")]


def dataset(name, columns, allowed, *, fmt="csv", mode="row", threshold=1):
    return parse_dataset(json.dumps({
        "name": name, "owner": f"{name}-owner", "store": f"{name}-store", "container": name, "format": fmt,
        "schema": [{"name": n, "type": t} for n, t in columns], "allowedFields": allowed,
        "accessMode": mode, "aggregationThreshold": threshold, "encryption": {"mode": "SSE"}}))


def query(segments, inputs=(("northwind", "sales"),)):
    return parse_query(json.dumps({
        "inputDatasets": [{"datasetName": d, "viewName": v} for d, v in inputs],
        "outputDataset": {"datasinkName": "sink"},
        "segments": [{"executionSequence": i + 1, **s} for i, s in enumerate(segments)]}))


def sales_rows(count=40, start=1):
    # regions of 20, 10, 6 and 4 rows (for count=40): thresholds cut between them
    sizes = {"north": 20, "east": 10, "south": 6, "west": 4}
    regions = [r for r, n in sizes.items() for _ in range(n)]
    return [(i, regions[(i - start) % len(regions)], (i * 7) % 50, f"user{i}@example.com")
            for i in range(start, start + count)]


def write_csv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def sqlite_answer(sql, tables):
    db = sqlite3.connect(":memory:")
    for name, (columns, rows) in tables.items():
        db.execute(f"CREATE TABLE {name} ({', '.join(c for c, _ in columns)})")
        db.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", rows)
    return sorted(db.execute(sql).fetchall())


def read_output(path: Path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, sorted(tuple(int(v) if v.lstrip("-").isdigit() else v for v in row) for row in reader)


def all_files(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def sales(tmp_path):
    """northwind's sales: two files in two folders; emails are not an allowed field."""
    rows = sales_rows()
    root = tmp_path / "northwind"
    write_csv(root / "a.csv", [c for c, _ in SALES_COLUMNS], rows[:25])
    write_csv(root / "more" / "b.csv", [c for c, _ in SALES_COLUMNS], rows[25:])
    source = DatasetSource(dataset("northwind", SALES_COLUMNS, ["id", "region", "amount"]), "sales", root)
    return source, rows


def test_a_query_runs_and_its_answer_equals_sqlite_on_the_clear_rows(spark_engine, sales, tmp_path):
    source, rows = sales
    sql = "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM sales GROUP BY region"
    result = spark_engine.run(query([{"sql": sql}]), [source], tmp_path / "out", run_id="plain")
    header, got = read_output(tmp_path / "out" / "plain" / "segment-1.csv")
    assert header == ["region", "n", "total"]
    assert got == sqlite_answer(sql, {"sales": (SALES_COLUMNS, rows)})
    [segment] = result.segments
    assert (segment.path, segment.rows_written, segment.groups_suppressed, segment.rows_filtered) == (
        "plain/segment-1.csv", 4, 0, 0)
    assert {"views", "preconditions", "sql", "write"} <= set(result.timings)
    assert all_files(tmp_path / "out") == ["plain", "plain/segment-1.csv"]


def test_a_column_outside_allowed_fields_is_refused_before_spark_runs(spark_engine, sales, tmp_path):
    source, _ = sales
    tracker = spark_engine._session.sparkContext.statusTracker()
    for sql in ("SELECT email FROM sales", "SELECT COUNT(DISTINCT s.email) AS n FROM sales s",
                "SELECT x.e FROM (SELECT email AS e FROM sales) x", "SELECT `_ccr_row_id` FROM sales"):
        with pytest.raises(SqlRefused) as refused:
            spark_engine.run(query([{"sql": sql}]), [source], tmp_path / "out", run_id="hidden")
        assert "allowedFields" in str(refused.value) or "_ccr_row_id" in str(refused.value)
    assert tracker.getJobIdsForGroup("hidden") == []
    assert all_files(tmp_path / "out") == []


def test_select_star_returns_only_the_allowed_columns(spark_engine, sales, tmp_path):
    source, rows = sales
    spark_engine.run(query([{"sql": "SELECT * FROM sales"}]), [source], tmp_path / "out", run_id="star")
    header, got = read_output(tmp_path / "out" / "star" / "segment-1.csv")
    assert header == ["id", "region", "amount"]
    assert got == sorted(r[:3] for r in rows)
    assert "@example.com" not in (tmp_path / "out" / "star" / "segment-1.csv").read_text()


def test_small_groups_are_suppressed_and_counted_and_the_strictest_owner_wins(spark_engine, sales, tmp_path):
    sales_source, sales_data = sales
    # woodgrove's customers: ids 1-40 again, K=8 (stricter than northwind's 5)
    customers = [(i, "gold" if i % 2 else "silver", i % 9, f"{i:03}-00-0000") for i in range(1, 41)]
    root = tmp_path / "woodgrove"
    write_csv(root / "customers.csv", [c for c, _ in CUSTOMER_COLUMNS], customers)
    northwind = dataset("northwind", SALES_COLUMNS, ["id", "region", "amount"], threshold=5)
    woodgrove = dataset("woodgrove", CUSTOMER_COLUMNS, ["id", "segment", "score"], threshold=8)
    sources = [DatasetSource(northwind, "sales", sales_source.root), DatasetSource(woodgrove, "cust", root)]
    sql = ("SELECT s.region, c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales s "
           "JOIN cust c ON s.id = c.id GROUP BY s.region, c.segment")
    result = spark_engine.run(query([{"sql": sql}], [("northwind", "sales"), ("woodgrove", "cust")]), sources,
                              tmp_path / "out", run_id="threshold")
    every_group = sqlite_answer(sql.replace("sales s", "sales s").replace("cust c", "cust c"), {
        "sales": (SALES_COLUMNS, sales_data), "cust": (CUSTOMER_COLUMNS, customers)})
    # a group is kept only with ≥ 8 rows of each side (each row joins one row: n counts both)
    expected = [g for g in every_group if g[2] >= 8]
    assert len(expected) < len(every_group)
    # a group of 5-7 rows passes northwind's K=5 but not woodgrove's K=8: the strictest owner wins
    assert any(5 <= g[2] < 8 for g in every_group)
    _, got = read_output(tmp_path / "out" / "threshold" / "segment-1.csv")
    assert got == expected
    [segment] = result.segments
    assert segment.groups_suppressed == len(every_group) - len(expected)
    assert segment.rows_written == len(expected)


def test_a_failed_precondition_refuses_the_run_before_any_sql_and_writes_nothing(spark_engine, sales, tmp_path):
    source, rows = sales
    segments = [{"sql": "SELECT COUNT(*) AS n FROM sales"},
                {"sql": "SELECT SUM(amount) AS s FROM sales",
                 "preConditions": [{"viewName": "SALES", "minRowCount": len(rows) + 1}]}]
    with pytest.raises(PreconditionFailed, match=f"view SALES .* has {len(rows)} rows.* at least {len(rows) + 1}"):
        spark_engine.run(query(segments), [source], tmp_path / "out", run_id="pre")
    assert all_files(tmp_path / "out") == []
    segments[1]["preConditions"][0]["minRowCount"] = len(rows)
    result = spark_engine.run(query(segments), [source], tmp_path / "out", run_id="pre")
    assert [s.path for s in result.segments] == ["pre/segment-1.csv", "pre/segment-2.csv"]


def test_post_filters_drop_rows_below_their_value_and_are_counted(spark_engine, sales, tmp_path):
    source, rows = sales
    sql = "SELECT region, COUNT(*) AS n FROM sales GROUP BY region"
    result = spark_engine.run(query([{"sql": sql, "postFilters": [{"columnName": "N", "value": 6}]}]), [source],
                              tmp_path / "out", run_id="post")
    _, got = read_output(tmp_path / "out" / "post" / "segment-1.csv")
    assert got == sqlite_answer(sql + " HAVING COUNT(*) >= 6", {"sales": (SALES_COLUMNS, rows)})
    assert (result.segments[0].rows_written, result.segments[0].rows_filtered) == (3, 1)
    with pytest.raises(BadRequest, match="post-filter column 'nope' is not a column of its result"):
        spark_engine.run(query([{"sql": sql, "postFilters": [{"columnName": "nope", "value": 1}]}]), [source],
                         tmp_path / "out2", run_id="post")
    assert all_files(tmp_path / "out2") == []


def test_a_header_that_does_not_match_the_schema_is_refused_naming_file_and_column(spark_engine, sales, tmp_path):
    source, rows = sales
    write_csv(source.root / "more" / "c.csv", ["id", "region", "amt", "email"], rows[:2])
    with pytest.raises(SchemaMismatch, match=r"'northwind', file more/c.csv: header column 3 is 'amt', the "
                                             r"schema says 'amount'"):
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "out",
                         run_id="header")
    write_csv(source.root / "more" / "c.csv", ["ID", "Region", "AMOUNT", "email", "extra"], rows[:2])
    with pytest.raises(SchemaMismatch, match="header column 5 'extra' is not in the schema"):
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "out",
                         run_id="header")
    assert all_files(tmp_path / "out") == []


def test_a_value_that_does_not_match_the_schema_is_refused_naming_file_and_column_not_the_value(
        spark_engine, sales, tmp_path):
    source, _ = sales
    write_csv(source.root / "more" / "odd name [1].csv", [c for c, _ in SALES_COLUMNS],
              [(100, "north", 5, "x@example.com"), (101, "north", "s3cr3t-value", "y@example.com")])
    with pytest.raises(SchemaMismatch) as refused:
        spark_engine.run(query([{"sql": "SELECT region, SUM(amount) AS s FROM sales GROUP BY region"}]), [source],
                         tmp_path / "out", run_id="value")
    assert str(refused.value) == ("dataset 'northwind', file more/odd name [1].csv: a value of column 'amount' "
                                  "is not a int")
    assert all_files(tmp_path / "out") == []


def test_a_failed_task_does_not_log_the_value_it_failed_on(spark_engine, sales, tmp_path, capfd):
    source, _ = sales
    write_csv(source.root / "bad.csv", [c for c, _ in SALES_COLUMNS], [(100, "north", "s3cr3t-value", "x")])
    capfd.readouterr()
    with pytest.raises(SchemaMismatch):
        spark_engine.run(query([{"sql": "SELECT SUM(amount) AS s FROM sales"}]), [source], tmp_path / "out",
                         run_id="quiet")
    with pytest.raises(SparkFailure):
        spark_engine.run(query([{"sql": "SELECT SUM(CAST(region AS INT)) AS s FROM sales"}]), [source],
                         tmp_path / "out", run_id="quiet")
    time.sleep(0.5)  # the JVM writes its logs from its own threads
    logged = capfd.readouterr()
    assert "s3cr3t-value" not in logged.err + logged.out
    assert "north" not in logged.err + logged.out


ENGINE_IN_A_PROCESS = """
import json, sys
from pathlib import Path
from sidecars.analytics.engine import Engine, DatasetSource, SchemaMismatch, SparkFailure
from sidecars.analytics.documents import parse_dataset, parse_query
root = Path(sys.argv[1])
dataset = parse_dataset(sys.argv[2])
engine = Engine(root / "scratch")
for sql in ("SELECT SUM(amount) AS s FROM sales", "SELECT SUM(CAST(region AS INT)) AS s FROM sales"):
    query = parse_query(json.dumps({"inputDatasets": [{"datasetName": "northwind", "viewName": "sales"}],
        "outputDataset": {"datasinkName": "sink"}, "segments": [{"executionSequence": 1, "sql": sql}]}))
    try:
        engine.run(query, [DatasetSource(dataset, "sales", root / "data")], root / "out", run_id="r")
    except (SchemaMismatch, SparkFailure) as exc:
        print("refused:", exc.code, flush=True)
engine.stop()
"""


def test_the_jvm_does_not_log_the_value_a_task_failed_on(tmp_path):
    """The JVM's own log lines (a failed task's exception, with the value) go to the process's stderr, which
    the room's logs collect: they are run here in a process of their own to see all of its output."""
    write_csv(tmp_path / "data" / "bad.csv", [c for c, _ in SALES_COLUMNS],
              [(1, "n0rth-secret", 1, "x"), (2, "north", "s3cr3t-value", "x")])
    document = json.dumps({
        "name": "northwind", "owner": "nw", "store": "nw", "container": "nw", "format": "csv",
        "schema": [{"name": n, "type": t} for n, t in SALES_COLUMNS], "allowedFields": ["region", "amount"],
        "accessMode": "row", "encryption": {"mode": "SSE"}})
    done = subprocess.run([sys.executable, "-c", ENGINE_IN_A_PROCESS, str(tmp_path), document],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.splitlines() == ["refused: SchemaMismatch", "refused: SparkJobFailed"], done.stderr[-2000:]
    assert "s3cr3t-value" not in done.stderr and "n0rth-secret" not in done.stderr


def test_a_runtime_error_is_one_line_that_does_not_quote_the_data(spark_engine, sales, tmp_path):
    source, _ = sales
    # ANSI mode fails a bad CAST quoting the value: that text would carry one row's region past the threshold
    with pytest.raises(SparkFailure) as failed:
        spark_engine.run(query([{"sql": "SELECT SUM(CAST(region AS INT)) AS s FROM sales"}]), [source],
                         tmp_path / "out", run_id="cast")
    message = str(failed.value)
    assert "\n" not in message and "CAST_INVALID_INPUT" in message
    assert not any(region in message for region in ("north", "east", "south", "west"))


def test_parquet_and_json_inputs_several_files_and_folders(spark_engine, tmp_path):
    rows = sales_rows()
    session = spark_engine._session
    parquet_root, json_root = tmp_path / "pq", tmp_path / "js"
    schema = ", ".join(f"{n} {t}" for n, t in SALES_COLUMNS)
    # Spark's own writer leaves _SUCCESS and .crc files beside the data: they are skipped, not read
    session.createDataFrame(rows[:30], schema).repartition(3).write.parquet(str(parquet_root / "part1"))
    session.createDataFrame(rows[30:], schema).write.parquet(str(parquet_root / "x" / "part2"))
    for index, chunk in enumerate((rows[:10], rows[10:])):
        (json_root / f"d{index}").mkdir(parents=True)
        (json_root / f"d{index}" / "rows.json").write_text("".join(
            json.dumps(dict(zip([c for c, _ in SALES_COLUMNS], row, strict=True))) + "\n" for row in chunk))
    sql = "SELECT region, SUM(amount) AS total FROM sales GROUP BY region"
    expected = sqlite_answer(sql, {"sales": (SALES_COLUMNS, rows)})
    for fmt, root in (("parquet", parquet_root), ("json", json_root)):
        source = DatasetSource(dataset("northwind", SALES_COLUMNS, ["region", "amount"], fmt=fmt), "sales", root)
        spark_engine.run(query([{"sql": sql}]), [source], tmp_path / fmt, run_id="r")
        assert read_output(tmp_path / fmt / "r" / "segment-1.csv")[1] == expected


def test_a_parquet_file_missing_a_column_or_with_another_type_is_refused(spark_engine, tmp_path):
    session = spark_engine._session
    root = tmp_path / "pq"
    session.createDataFrame([(1, "north", 5)], "id int, region string, amount int").write.parquet(str(root / "a"))
    source = DatasetSource(dataset("northwind", SALES_COLUMNS, ["region"], fmt="parquet"), "sales", root)
    with pytest.raises(SchemaMismatch, match=r"'northwind', file a/part-.*parquet: has no column 'email'"):
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "o", run_id="r")
    session.createDataFrame([(1, "north", "5", "e")], "id int, region string, amount string, email string") \
        .write.mode("overwrite").parquet(str(root / "a"))
    with pytest.raises(SchemaMismatch, match="column 'amount' is string, the schema says int"):
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "o", run_id="r")
    assert all_files(tmp_path / "o") == []


def test_date_range_folders_are_read_only_inside_the_range(spark_engine, tmp_path):
    rows = sales_rows(30)
    root = tmp_path / "daily"
    header = [c for c, _ in SALES_COLUMNS]
    write_csv(root / "2026-01-01" / "a.csv", header, rows[:10])
    write_csv(root / "2026-01-02" / "a.csv", header, rows[10:20])
    write_csv(root / "eu" / "2026-01-03" / "a.csv", header, rows[20:25])
    write_csv(root / "always.csv", header, rows[25:])
    write_csv(root / "2026-13-40" / "not-a-date.csv", header, rows[:1])
    source = DatasetSource(dataset("northwind", SALES_COLUMNS, ["id"]), "sales", root)
    sql = "SELECT COUNT(*) AS n FROM sales"

    def count(date_range):
        spark_engine.run(query([{"sql": sql}]), [source], tmp_path / "o", run_id="r", date_range=date_range)
        answer = read_output(tmp_path / "o" / "r" / "segment-1.csv")[1]
        (tmp_path / "o" / "r" / "segment-1.csv").unlink()
        return answer[0][0]

    assert count((None, None)) == 31
    assert count((date(2026, 1, 2), None)) == 10 + 5 + 5 + 1
    assert count((None, date(2026, 1, 1))) == 10 + 5 + 1
    assert count((date(2026, 1, 2), date(2026, 1, 2))) == 10 + 5 + 1
    assert count((date(2027, 1, 1), None)) == 5 + 1


def _slow_dataset(tmp_path):
    root = tmp_path / "big"
    write_csv(root / "a.csv", [c for c, _ in SALES_COLUMNS], [(i, "r", i, "e") for i in range(3000)])
    return DatasetSource(dataset("northwind", SALES_COLUMNS, ["id", "amount"]), "sales", root)


#: a nested-loop join of 3000³ rows: minutes of work unless it is cancelled
SLOW_SQL = ("SELECT COUNT(*) AS n FROM sales a JOIN sales b ON a.amount < b.amount "
            "JOIN sales c ON b.amount < c.amount + a.id")


@pytest.mark.parametrize("how", ["event", "cancel"])
def test_a_run_cancelled_mid_job_stops_and_leaves_no_file(spark_engine, tmp_path, how):
    source = _slow_dataset(tmp_path)
    cancelled = threading.Event()
    tracker = spark_engine._session.sparkContext.statusTracker()
    run_id = f"slow-{how}"

    def cancel_once_running():
        deadline = time.monotonic() + 30
        while not tracker.getJobIdsForGroup(run_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        cancelled.set() if how == "event" else spark_engine.cancel(run_id)

    threading.Thread(target=cancel_once_running, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(RunCancelled, match=f"run {run_id} was cancelled; nothing was written"):
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}, {"sql": SLOW_SQL}]), [source],
                         tmp_path / "out", run_id=run_id, cancelled=cancelled)
    assert time.monotonic() - started < 20
    assert all_files(tmp_path / "out") == []
    # the session outlives a cancelled run, and the run id may be used again
    result = spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "out",
                              run_id=run_id)
    assert result.segments[0].rows_written == 1


def test_an_output_file_is_complete_byte_for_byte(spark_engine, tmp_path):
    rows = [(i, f'name, "quoted" {i}', i * 3, "e") for i in range(1, 200)]
    root = tmp_path / "quoted"
    write_csv(root / "a.csv", [c for c, _ in SALES_COLUMNS], rows)
    source = DatasetSource(dataset("northwind", SALES_COLUMNS, ["id", "region", "amount"]), "sales", root)
    spark_engine.run(query([{"sql": "SELECT id, region, amount FROM sales ORDER BY id"}]), [source],
                     tmp_path / "out", run_id="bytes")
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(["id", "region", "amount"])
    writer.writerows(row[:3] for row in rows)
    assert (tmp_path / "out" / "bytes" / "segment-1.csv").read_bytes() == expected.getvalue().encode()


def test_a_symlink_in_a_dataset_is_refused_not_followed(spark_engine, sales, tmp_path):
    source, _ = sales
    secret = tmp_path / "elsewhere"
    write_csv(secret / "secret.csv", [c for c, _ in SALES_COLUMNS], [(999, "north", 1, "ceo@example.com")])
    sql = "SELECT COUNT(*) AS n FROM sales"
    (source.root / "more" / "link.csv").symlink_to(secret / "secret.csv")
    with pytest.raises(UnsafeDatasetFile, match="more/link.csv is a symbolic link; links are not followed"):
        spark_engine.run(query([{"sql": sql}]), [source], tmp_path / "out", run_id="link")
    (source.root / "more" / "link.csv").unlink()
    (source.root / "folder").symlink_to(secret, target_is_directory=True)
    with pytest.raises(UnsafeDatasetFile, match="folder is a symbolic link"):
        spark_engine.run(query([{"sql": sql}]), [source], tmp_path / "out", run_id="link")
    (source.root / "folder").unlink()
    os.mkfifo(source.root / "pipe.csv")
    with pytest.raises(UnsafeDatasetFile, match="pipe.csv is not a regular file"):
        spark_engine.run(query([{"sql": sql}]), [source], tmp_path / "out", run_id="link")
    assert all_files(tmp_path / "out") == []


def test_file_names_with_odd_characters_are_read_as_themselves(spark_engine, tmp_path):
    root = tmp_path / "odd"
    header = [c for c, _ in SALES_COLUMNS]
    names = ["sp ace.csv", "g*l[o]b{a,b}?.csv", "pct%20.csv", "hash#.csv", "ünï.csv", "new\nline.csv",
             "back\\slash.csv", "quote'\".csv"]
    for index, name in enumerate(names):
        write_csv(root / name, header, [(index, "r", 10 ** index, "e")])
    # a file a glob of the odd names would also match: it must not be read twice, nor instead
    write_csv(root / "gxlxbx.csv", header, [(99, "r", 0, "e")])
    source = DatasetSource(dataset("northwind", SALES_COLUMNS, ["amount"]), "sales", root)
    spark_engine.run(query([{"sql": "SELECT SUM(amount) AS s, COUNT(*) AS n FROM sales"}]), [source],
                     tmp_path / "out", run_id="odd")
    assert read_output(tmp_path / "out" / "odd" / "segment-1.csv")[1] == [(11111111, len(names) + 1)]
    write_csv(root / "a:b.csv", header, [])
    with pytest.raises(UnsafeDatasetFile, match="a:b.csv: a ':' in a file name cannot be read"):
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "o2",
                         run_id="odd")


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "", ".hidden", "x" * 65])
def test_a_run_id_that_is_not_a_plain_name_is_refused(spark_engine, sales, tmp_path, run_id):
    source, _ = sales
    with pytest.raises(BadRequest, match="is not a plain name"):
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "out",
                         run_id=run_id)
    assert all_files(tmp_path) == sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not (tmp_path / "out").exists()


def test_concurrent_runs_see_only_their_own_views(spark_engine, tmp_path):
    results = {}

    def run(name, count):
        root = tmp_path / name
        write_csv(root / "a.csv", [c for c, _ in SALES_COLUMNS], sales_rows(count))
        source = DatasetSource(dataset("northwind", SALES_COLUMNS, ["id"]), "sales", root)
        spark_engine.run(query([{"sql": "SELECT COUNT(*) AS n FROM sales"}]), [source], tmp_path / "out",
                         run_id=name)
        results[name] = read_output(tmp_path / "out" / name / "segment-1.csv")[1]

    threads = [threading.Thread(target=run, args=(f"run{n}", n)) for n in (7, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"run7": [(7,)], "run13": [(13,)]}


def test_a_result_whose_every_group_is_suppressed_is_a_header_only_file(spark_engine, sales, tmp_path):
    source, _ = sales
    strict = DatasetSource(dataset("northwind", SALES_COLUMNS, ["id", "region", "amount"], threshold=1000),
                           "sales", source.root)
    result = spark_engine.run(query([{"sql": "SELECT region, COUNT(*) AS n FROM sales GROUP BY region"}]), [strict],
                              tmp_path / "out", run_id="none")
    assert (tmp_path / "out" / "none" / "segment-1.csv").read_text() == "region,n\n"
    assert (result.segments[0].rows_written, result.segments[0].groups_suppressed) == (0, 4)
