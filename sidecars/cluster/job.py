"""The driver's side of a cluster run: a SparkSession on the room cluster, a query whose output parts the
executors write themselves, and a publication that happens only when every part is there.

Executors write their parts (Spark's file committer) under `SINK/.staging-RUN/`; the driver then checks
the committed part count equals the partition count and renames the folder to `SINK/RUN` in one step. A
run that dies before that (driver killed, an executor's tasks failing past `spark.task.maxFailures`)
leaves nothing under `SINK/RUN`: readers of the sink see a whole result or none.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from ..common.errors import CcrError, Conflict


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
