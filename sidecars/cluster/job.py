"""The driver's side of a cluster run: a SparkSession on the room cluster, a query whose output parts the
executors write themselves, and a publication that happens only when every part is there.

Executors write their parts (Spark's file committer) under `SINK/.staging-RUN/`; the driver then checks
the committed part count equals the partition count and renames the folder to `SINK/RUN` in one step. A
run that dies before that (driver killed, an executor's tasks failing past `spark.task.maxFailures`)
leaves nothing under `SINK/RUN`: readers of the sink see a whole result or none.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from ..common.errors import CcrError, Conflict

SUCCEEDED, FAILED = "succeeded", "failed"


class IncompleteOutput(CcrError):
    """Fewer committed parts than partitions: nothing is published."""


def session(master: str, conf: Mapping[str, str], app: str = "ccr-cluster") -> SparkSession:
    builder = SparkSession.builder.master(master).appName(app)
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def staging_dir(sink: Path, run_id: str) -> Path:
    return sink / f".staging-{run_id}"


def write_and_publish(result: DataFrame, sink: Path, run_id: str, parts: int) -> Path:
    """Executors write `parts` CSV parts; published as SINK/RUN only when all of them are committed."""
    final = sink / run_id
    if final.exists():
        raise Conflict(f"run {run_id} is already published in the sink")
    staging = staging_dir(sink, run_id)
    shutil.rmtree(staging, ignore_errors=True)
    result.repartition(parts).write.option("header", "true").csv(str(staging))
    written = sorted(staging.glob("part-*.csv"))
    # _SUCCESS is written by the job commit, after every task committed its part (an empty partition
    # writes no part, so there may be fewer parts than partitions, never more)
    if not (staging / "_SUCCESS").exists() or not 1 <= len(written) <= parts:
        raise IncompleteOutput(f"run {run_id}: the job did not commit every part ({len(written)} found); "
                               "nothing published")
    os.rename(staging, final)
    return final


def settle(sink: Path, run_id: str, exit_code: int | None) -> str:
    """How a run ended, once its driver application is gone: `succeeded` only if the driver exited 0 and the
    run is published whole; otherwise `failed`, and what its executors left in the staging folder is removed
    (a dead driver never published: readers of the sink see nothing of it)."""
    final = sink / run_id
    if exit_code == 0 and (final / "_SUCCESS").is_file():
        return SUCCEEDED
    shutil.rmtree(staging_dir(sink, run_id), ignore_errors=True)
    return FAILED


def read_view(spark: SparkSession, view: str, source: str | Mapping[str, str]) -> None:
    """A temp view over a folder or file: `source` is a CSV path, or {"path", "format": "csv" | "parquet"}.
    Folders are read recursively (a dataset's date folders are not Hive partitions)."""
    path, kind = (source, "csv") if isinstance(source, str) else (source["path"], source.get("format", "csv"))
    if kind not in ("csv", "parquet"):
        raise CcrError(f"view {view}: format {kind!r} is not csv or parquet")
    reader = spark.read.option("recursiveFileLookup", "true")
    frame = reader.option("header", "true").csv(path) if kind == "csv" else reader.parquet(path)
    frame.createOrReplaceTempView(view)


def main(args_path: str) -> None:
    """`python -m sidecars.cluster.job ARGS.json` in the driver room: views over CSV files, one query, the
    parts published. ARGS: master, conf, properties (a 0600 file with the secret, or ""), views {name: path},
    sql, sink, run_id, parts (a view is a CSV path or {"path", "format"})."""
    args = json.loads(Path(args_path).read_text())
    conf = dict(args["conf"])
    if args.get("properties"):
        for line in Path(args["properties"]).read_text().splitlines():
            key, _, value = line.partition(" ")
            conf[key] = value
    spark = session(args["master"], conf)
    spark.sparkContext.setLogLevel("WARN")
    for view, source in args["views"].items():
        read_view(spark, view, source)
    write_and_publish(spark.sql(args["sql"]), Path(args["sink"]), args["run_id"], int(args["parts"]))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
