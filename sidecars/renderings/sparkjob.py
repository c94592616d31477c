"""The SparkApplication's default driver program: `sidecars.cluster.job` (its CLI: one argument, the run's
arguments file) run as a file.

Spark's PythonRunner starts the main application file as `python FILE ARGS...`, a script, not a module, so
job.py cannot be that file itself: it is a module of the sidecars package, and its relative imports fail in a
script ("attempted relative import with no known parent package"). This file imports it absolutely. Python
puts a script's own folder first on its path; this folder's modules (cli, render, k8s, ...) are no
top-level modules, so it is taken off.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: the run's arguments job.py reads (sidecars/cluster/job.py, `main`)
REQUIRED_KEYS = ("master", "conf", "views", "sql", "sink", "run_id", "parts")
MAX_ARGS_BYTES = 1 << 20


def read_arguments(path: str) -> str | None:
    """None if the arguments file is one job.py can run, else what is wrong with it, in one line."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_ARGS_BYTES + 1)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if len(data) > MAX_ARGS_BYTES:
        return f"{path} is larger than {MAX_ARGS_BYTES} bytes"
    try:
        args = json.loads(data)
    except ValueError as exc:
        return f"{path} is not JSON: {exc}"
    if not isinstance(args, dict):
        return f"{path} holds no JSON object"
    missing = [key for key in REQUIRED_KEYS if key not in args]
    return f"{path} lacks {', '.join(missing)}" if missing else None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: sparkjob.py ARGS.json (the run's arguments: sidecars/cluster/job.py)", file=sys.stderr)
        return 2
    problem = read_arguments(argv[1])
    if problem:
        print(f"ccr spark job: {problem}", file=sys.stderr)
        return 1
    # lazy: Spark's JVM and pyspark (job.py's imports, seconds) start only for arguments it can run; and only
    # after this script's own folder is off the path (see the module docstring)
    from sidecars.cluster.job import main as run_job

    run_job(argv[1])
    return 0


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.exit(main(sys.argv))
