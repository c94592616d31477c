"""The driver application the cluster tests run in the driver room (`ip netns exec … python driver_app.py
ARGS.json`): views over CSV files, one SQL query, output parts written by the executors and published only
when all are committed (sidecars.cluster.job). `pause_s` > 0 makes each row wait in a Python UDF on the
executors, so a test can kill an executor room while its tasks run. Prints the answer's rows as JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sidecars.cluster.job import session, write_and_publish


def main(args_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    conf = dict(args["conf"])
    for line in Path(args["properties"]).read_text().splitlines() if args.get("properties") else []:
        key, _, value = line.partition(" ")
        conf[key] = value
    spark = session(args["master"], conf)
    spark.sparkContext.setLogLevel("WARN")
    pause_s = float(args.get("pause_s", 0))

    def pause(value: str) -> str:
        time.sleep(pause_s)
        return value

    spark.udf.register("ccr_pause", pause)
    for view, path in args["views"].items():
        spark.read.option("header", "true").csv(path).createOrReplaceTempView(view)
    write_and_publish(spark.sql(args["sql"]), Path(args["sink"]), args["run_id"], int(args["parts"]))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
