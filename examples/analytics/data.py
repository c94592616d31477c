"""The analytics demo's data, generated deterministically, and the answers computed on the clear inputs.

- northwind (a retailer): its sales, CSV with a header, in two files under date folders
  (`2026-11-01/sales.csv`, `2026-11-02/sales.csv`: a run's startDate/endDate picks folders by name);
- woodgrove (a bank): its customers, Parquet in two files (written by pyspark, the venv's only Parquet
  writer; the app reads them with the same Spark).

Woodgrove's customer ids are unique, so each row of the join is one northwind sale: a group's COUNT(*)
is the number of distinct northwind rows in it, which is what the room's aggregation threshold counts.
The answers are computed with sqlite3 over the same rows, independently of Spark and of the room.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = 20261205
CUSTOMERS = 3000
CITIES = ("Seattle", "Redmond", "Bellevue", "Tacoma")
#: a city with fewer sales than northwind's threshold (K = 10): its group is suppressed in every result
SMALL_CITY = "Walla Walla"
SMALL_CITY_SALES = 4
CATEGORIES = ("books", "garden", "kitchen", "toys")
AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
SEGMENTS = ("retail", "premier")
DAYS = ("2026-11-01", "2026-11-02")
NORTHWIND_SALES = 4000
NORTHWIND_COLUMNS = ("customer_id", "email", "city", "category", "amount")
WOODGROVE_COLUMNS = ("customer_id", "age_band", "segment", "income")

Row = tuple[str | int, ...]


@dataclass(frozen=True)
class DemoData:
    northwind: tuple[Row, ...]   # NORTHWIND_COLUMNS, every file's rows
    woodgrove: tuple[Row, ...]   # WOODGROVE_COLUMNS

    def answer(self, sql: str, threshold: int) -> list[tuple[str, ...]]:
        """`sql` (one GROUP BY over the views `northwind` and `woodgrove`) in sqlite over the clear rows, the
        groups of fewer than `threshold` joined rows dropped: what the room must write, sorted."""
        db = sqlite3.connect(":memory:")
        db.execute(f"CREATE TABLE northwind ({', '.join(NORTHWIND_COLUMNS)})")
        db.execute(f"CREATE TABLE woodgrove ({', '.join(WOODGROVE_COLUMNS)})")
        db.executemany("INSERT INTO northwind VALUES (?, ?, ?, ?, ?)", self.northwind)
        db.executemany("INSERT INTO woodgrove VALUES (?, ?, ?, ?)", self.woodgrove)
        rows = db.execute(f"{sql} HAVING COUNT(*) >= {int(threshold)}").fetchall()
        return sorted(tuple(str(value) for value in row) for row in rows)

    def groups(self, sql: str) -> int:
        """How many groups `sql` has with no threshold at all."""
        return len(self.answer(sql, 0))


def generate() -> DemoData:
    rng = random.Random(SEED)
    everyone = [f"c{i:05d}" for i in range(CUSTOMERS)]
    shoppers = rng.sample(everyone, CUSTOMERS // 2)
    banked = set(rng.sample(everyone, 1200))
    sales: list[Row] = []
    for _sale in range(NORTHWIND_SALES):
        customer = rng.choice(shoppers)
        sales.append((customer, f"{customer}@example.com", rng.choice(CITIES), rng.choice(CATEGORIES),
                      rng.randint(5, 500)))
    # The small city's few sales are by woodgrove's customers, so its group exists in the join (and is
    # then suppressed) rather than vanishing for want of a match.
    small_city_shoppers = sorted(banked)[:SMALL_CITY_SALES]
    for customer in small_city_shoppers:
        sales.append((customer, f"{customer}@example.com", SMALL_CITY, rng.choice(CATEGORIES), rng.randint(5, 500)))
    rng.shuffle(sales)
    customers = tuple((customer, rng.choice(AGE_BANDS), rng.choice(SEGMENTS), rng.randint(20, 250) * 1000)
                      for customer in sorted(banked))
    return DemoData(tuple(sales), customers)


def write(data: DemoData, data_dir: Path) -> None:
    """northwind/ (CSV, two date folders) and woodgrove/ (Parquet, two files) under `data_dir`."""
    half = len(data.northwind) // 2
    for day, rows in zip(DAYS, (data.northwind[:half], data.northwind[half:]), strict=True):
        folder = data_dir / "northwind" / day
        folder.mkdir(parents=True)
        with open(folder / "sales.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(NORTHWIND_COLUMNS)
            writer.writerows(rows)
    write_parquet(data.woodgrove, WOODGROVE_COLUMNS, ("string", "string", "string", "int"),
                  data_dir / "woodgrove", "customers", files=2)


def write_parquet(rows: Sequence[Row], columns: Sequence[str], types: Sequence[str], folder: Path, stem: str,
                  *, files: int) -> None:
    """`rows` as `files` Parquet files `folder/<stem>-<n>.parquet`, through a local Spark session (its output
    directory's bookkeeping files, _SUCCESS and .crc, are not part of the dataset)."""
    from pyspark import SparkContext  # lazy: importing pyspark takes 1.0 s (measured); only the writer needs it
    from pyspark.sql import SparkSession  # lazy: as above

    # A process holds one SparkContext: one that is running already (a test session's engine) is borrowed and
    # left running; only a session started here is stopped here.
    borrowed = SparkContext._active_spark_context is not None
    scratch = Path(tempfile.mkdtemp(prefix="ccr-analytics-parquet-"))
    # Spark otherwise resolves the host name to pick an address (and warns when it is a loopback one)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master("local[1]").appName("ccr-analytics-demo-data")
             .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").config("spark.local.dir", str(scratch / "local"))
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    try:
        spark.sparkContext.setLogLevel("ERROR")
        schema = ", ".join(f"{name} {kind}" for name, kind in zip(columns, types, strict=True))
        frame = spark.createDataFrame(list(rows), schema=schema).repartition(files)
        frame.sortWithinPartitions(columns[0]).write.parquet(str(scratch / "out"))
        folder.mkdir(parents=True)
        parts = sorted((scratch / "out").glob("part-*.parquet"))
        for number, part in enumerate(parts):
            shutil.copyfile(part, folder / f"{stem}-{number}.parquet")
    finally:
        if not borrowed:
            spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def read_result_csv(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    """A result file the room wrote (one CSV with a header): its header and its rows, sorted."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], sorted(tuple(row) for row in rows[1:])


def comparable(rows: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Rows with numbers written the same way (Spark may print a sum as 1234 or 1234.0)."""
    def same(value: str) -> str:
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if number.is_integer() else repr(number)

    return sorted(tuple(same(value) for value in row) for row in rows)
