"""`cold_start_s`: from `ccr up` to the app process running, for the cleanroomhello-job room.

Images, stand-ins, the contract, keys and data are prepared once (the demo's steps 1-4); then the room
is brought up and down several times and the median time from running `ccr up` until it reports the app
running is the figure. The per-step lines of the median run are printed (C-ACI takes minutes).
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = 5
STEP = re.compile(r"^\s*(ok|FAILED)\s+(.*?)\s+(\d+) ms$")


def _demo():
    path = REPO / "examples" / "cleanroomhello-job" / "demo.py"
    spec = importlib.util.spec_from_file_location("cleanroomhello_job_demo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ccr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars", *args], cwd=REPO, capture_output=True, text=True)


def run() -> dict[str, float]:
    demo = _demo()
    run_dir = Path(tempfile.mkdtemp(prefix="ccr-bench-room-"))
    try:
        room = demo.prepare(run_dir)
        timings: list[tuple[float, str]] = []
        for attempt in range(RUNS):
            room_dir = run_dir / f"room{attempt}"
            started = time.monotonic()
            up = _ccr("up", str(room.spec), "--endpoints", room.endpoints, "--run-dir", str(room_dir))
            elapsed = time.monotonic() - started
            _ccr("down", "--run-dir", str(room_dir))
            if up.returncode != 0:
                raise RuntimeError(f"ccr up failed:\n{up.stdout}\n{up.stderr}")
            timings.append((elapsed, up.stdout))
        timings.sort()
        median_s, median_out = timings[len(timings) // 2]
        print(f"   ccr up to app running: {', '.join(f'{t:.2f}' for t, _ in timings)} s (median {median_s:.2f})")
        for line in median_out.splitlines():
            match = STEP.match(line)
            if match:
                print(f"     {match.group(2):<55} {int(match.group(3)):>6} ms")
        return {"cold_start_s": round(statistics.median(t for t, _ in timings), 3)}
    finally:
        _ccr("emulators", "stop", "--run-dir", str(run_dir))
