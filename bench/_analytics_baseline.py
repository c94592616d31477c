"""The baseline of bench/analytics.py: plain pyspark local[2] on the clear files, in its own process (one
process holds one SparkContext; the engine's has the room's settings).

    python -m bench._analytics_baseline JOB.json   → prints {"seconds": S, "rows": N}

The session is started before the clock; the timed part is what a user's script does: read the CSV files
with their schema, run the SQL, write the result as one CSV file (run three times, the best of the last two
counts). It has the engine's read buffer and shuffle partitions, so that the ratio is the room's cost, not
a tuning.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession


def main(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    session = (SparkSession.builder.master("local[2]").appName("bench-baseline")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", job["shuffle_partitions"])
               .config("spark.hadoop.io.file.buffer.size", job["read_buffer"]).getOrCreate())
    session.sparkContext.setLogLevel("WARN")
    for view, table in job["tables"].items():
        session.read.schema(table["schema"]).option("header", "true").csv(table["files"]) \
            .createOrReplaceTempView(view)
    # the first runs warm the JVM (class loading, code generation, JIT) as the engine's session is warm
    # from earlier runs: the best of the last two is the figure
    seconds = []
    for attempt in range(3):
        output = f"{job['output']}-{attempt}"
        started = time.perf_counter()
        session.sql(job["sql"]).coalesce(1).write.option("header", "true").csv(output)
        seconds.append(time.perf_counter() - started)
    [part] = Path(output).glob("part-*.csv")
    rows = len(part.read_text().splitlines()) - 1
    print(json.dumps({"seconds": min(seconds[1:]), "first_seconds": seconds[0], "rows": rows}), flush=True)
    session.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
