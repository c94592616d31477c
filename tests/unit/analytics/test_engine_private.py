"""Private segments through real Spark: contributions are bounded per person before aggregating, every public
key is released (absent ones too), a plain segment cannot read a private dataset, and nothing from the data
(marker values planted in it) reaches the logs, the output or an error message of the process running it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecars.analytics.documents import PrivacyRefused, parse_dataset, parse_query
from sidecars.analytics.engine import DatasetSource

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]

COLUMNS = [("person", "string"), ("city", "string"), ("amount", "int"), ("note", "string")]
MARKER = "ZQXMARKER"


def dataset(bound=2):
    return parse_dataset(dataset_document(bound))


def dataset_document(bound=2):
    return json.dumps({
        "name": "shop", "owner": "northwind", "store": "shop", "container": "shop", "format": "csv",
        "schema": [{"name": n, "type": t} for n, t in COLUMNS], "allowedFields": ["person", "city", "amount"],
        "accessMode": "aggregate", "encryption": {"mode": "SSE"},
        "privacy": {"epsilonTotal": 100, "perQueryEpsilonMax": 100, "contributionBound": bound,
                    "personKey": "person"}})


def query(*segments):
    return parse_query(json.dumps({
        "inputDatasets": [{"datasetName": "shop", "viewName": "sales"}], "outputDataset": {"datasinkName": "sink"},
        "segments": [{"executionSequence": i + 1, **s} for i, s in enumerate(segments)]}))


def private(sql, epsilon=60, **extra):
    return {"sql": sql, "private": True, "epsilon": epsilon, "publicKeys": {"city": ["paris", "oslo", "lima"]},
            "bounds": {"amount": [0, 10]}, **extra}


def write_shop(root: Path) -> None:
    rows = [(f"{MARKER}-p{i}", "paris", 7, f"{MARKER}-note") for i in range(10)]
    rows += [(f"{MARKER}-whale", "paris", 10, f"{MARKER}-note") for _ in range(500)]
    rows += [(f"{MARKER}-o{i}", "oslo", 3, f"{MARKER}-note") for i in range(5)]
    root.mkdir(parents=True)
    with open(root / "sales.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow([name for name, _ in COLUMNS])
        writer.writerows(rows)


@pytest.fixture
def shop(tmp_path):
    """paris: 10 people of one row each, plus one 'whale' with 500 rows; oslo: 5 people; lima: nobody.
    Every person id and note carries the marker."""
    write_shop(tmp_path / "shop")
    return DatasetSource(dataset(), "sales", tmp_path / "shop")


def released(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        return {row[0]: dict(zip(header, row, strict=True)) for row in reader}


def test_a_private_count_bounds_each_person_and_releases_every_public_key(spark_engine, shop, tmp_path):
    # ε 60 over one measure with Δ 2: noise of scale 1/30, almost always 0; the whale counts 2, not 500
    result = spark_engine.run(query(private("SELECT city, COUNT(*) AS n FROM sales GROUP BY city")), [shop],
                              tmp_path / "out", run_id="dp-count")
    rows = released(tmp_path / "out" / "dp-count" / "segment-1.csv")
    assert list(rows) == ["paris", "oslo", "lima"]
    assert abs(int(rows["paris"]["n"]) - 12) <= 1
    assert abs(int(rows["oslo"]["n"]) - 5) <= 1
    assert abs(int(rows["lima"]["n"])) <= 1
    [segment] = result.segments
    # what the run reports counts released cells, not rows of data
    assert (segment.rows_written, segment.groups_suppressed) == (3, 0)


def test_a_private_sum_and_average_clamp_values_and_bound_contributions(spark_engine, shop, tmp_path):
    sql = "SELECT city, SUM(amount) AS total, AVG(amount) AS mean FROM sales WHERE amount > 0 GROUP BY city"
    spark_engine.run(query(private(sql, epsilon=100)), [shop], tmp_path / "out", run_id="dp-sum")
    rows = released(tmp_path / "out" / "dp-sum" / "segment-1.csv")
    # sum noise scale: Δ = 2 × 10, ε share 50 → 0.4
    assert abs(float(rows["paris"]["total"]) - (10 * 7 + 2 * 10)) < 10
    assert abs(float(rows["oslo"]["total"]) - 15) < 10
    assert 0 <= float(rows["lima"]["mean"]) <= 10


def test_a_plain_segment_cannot_read_a_private_dataset(spark_engine, shop, tmp_path):
    with pytest.raises(PrivacyRefused, match="segment 1 is not private, and dataset 'shop' allows private"):
        spark_engine.run(query({"sql": "SELECT city, COUNT(*) AS n FROM sales GROUP BY city"}), [shop],
                         tmp_path / "out", run_id="dp-plain")
    assert not (tmp_path / "out").exists()


PRIVATE_RUNS_IN_A_PROCESS = """
import json, logging, sys
from pathlib import Path
from sidecars.analytics.engine import Engine, DatasetSource
from sidecars.analytics.documents import parse_dataset, parse_query
from sidecars.common.errors import CcrError
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
root, dataset = Path(sys.argv[1]), parse_dataset(sys.argv[2])
engine = Engine(root / "scratch")
for folder, sql in (("shop", "SELECT city, COUNT(*) AS n, AVG(amount) AS a FROM sales GROUP BY city"),
                    ("bad", "SELECT city, SUM(amount) AS s FROM sales GROUP BY city")):
    query = parse_query(json.dumps({"inputDatasets": [{"datasetName": "shop", "viewName": "sales"}],
        "outputDataset": {"datasinkName": "sink"}, "segments": [{"executionSequence": 1, "sql": sql,
        "private": True, "epsilon": 1, "publicKeys": {"city": ["paris", "oslo"]}, "bounds": {"amount": [0, 10]}}]}))
    try:
        engine.run(query, [DatasetSource(dataset, "sales", root / folder)], root / "out", run_id=folder)
        print("released:", folder, flush=True)
    except CcrError as exc:
        print("refused:", exc.code, exc.message, flush=True)
logging.getLogger("test").info("private runs done")
engine.stop()
"""


def test_the_exported_logs_of_private_runs_carry_no_value_of_the_data(tmp_path):
    """Everything the app's process writes (Python logging at DEBUG, the JVM's log lines, stdout) is what the
    room's logs export: a process of its own runs a private query and a failing one over data whose person
    keys and values carry a marker, and its whole output is searched for the marker."""
    write_shop(tmp_path / "shop")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sales.csv").write_text(f"person,city,amount,note\n{MARKER}-x,paris,{MARKER}42,n\n")
    done = subprocess.run([sys.executable, "-c", PRIVATE_RUNS_IN_A_PROCESS, str(tmp_path), dataset_document()],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = done.stdout.splitlines()
    assert lines[0] == "released: shop" and lines[1].startswith("refused: SchemaMismatch"), done.stderr[-2000:]
    assert "column 'amount'" in lines[1]
    # the capture saw the process's logging (so an absent marker means something)
    assert "private runs done" in done.stderr
    assert MARKER not in done.stdout and MARKER not in done.stderr


def test_a_value_that_would_fail_the_job_does_not_fail_a_private_run(spark_engine, shop, tmp_path):
    """Whether a run failed would be an exact answer about one value: `person = 1` fails a job in ANSI mode
    on the first person id that is not a number. A private run's session runs without ANSI errors."""
    from pyspark.errors import PySparkException  # lazy: pyspark costs ~0.5 s to import (measured); Spark tests only

    with pytest.raises(PySparkException):
        spark_engine._session.sql("SELECT COUNT(*) FROM VALUES ('not-a-number') AS t(x) WHERE x = 1").collect()
    spark_engine.run(query(private("SELECT city, COUNT(*) AS n FROM sales WHERE person = 1 GROUP BY city")),
                     [shop], tmp_path / "out", run_id="dp-ansi")
    assert list(released(tmp_path / "out" / "dp-ansi" / "segment-1.csv")) == ["paris", "oslo", "lima"]
