"""telemetry_overhead_ratio: a sidecar's request throughput with OTel on ÷ off (goal ≥ 0.95).

The sidecar under load is the telemetry sidecar's own `POST /logs/app` (the launcher's hand-over of the
app's output: parse NDJSON, encrypt, append), served by `sidecars/common/http.py` like every sidecar's
API. "On" means what a room runs with: an OTLP endpoint set, so setup_telemetry installs the SDK, FastAPI
traces every request (a server span, request metrics) and the SDK batches them to a second telemetry
sidecar acting as the collector. Load: wrk, one thread, 8 connections, rounds alternating off/on.

Throughput is measured as requests per CPU-second of the sidecar process (all its threads, exporter
included), the rate a saturated single-event-loop sidecar reaches: wall-clock req/s on this shared 2-core
machine swings by 2x with whatever else runs, CPU time per request much less. Wall-clock req/s is printed
too. Both sidecars run side by side for the whole measurement and are measured in pairs of short rounds,
the order alternating from pair to pair; the figure is the median of the pairs' ratios, so a busy moment
of the box, or a drift over the run, hits both sides of a pair alike (fresh processes per round, as
before, made the figure swing 0.87-0.95 from one run to the next).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from sidecars.common.process import ManagedProcess, file_exists

ROUNDS = 11
SECONDS = 2
CONNECTIONS = 8
REPO = Path(__file__).resolve().parent.parent
APP_LINES = "\n".join(json.dumps({"time": "2026-11-24T05:00:00.000Z", "stream": s, "line": f"row {i} processed"})
                      for i, s in enumerate(["stdout", "stdout", "stderr"]))


def _sidecar(work: Path, name: str, env: dict[str, str]) -> tuple[ManagedProcess, dict]:
    ready = work / f"{name}.ready"
    process = ManagedProcess(
        name, [sys.executable, "-m", "sidecars", "sidecar", "run", "telemetry", "--grpc-port", "0", "--http-port", "0",
               # no governance listens there: nothing is ever exported, as the measurement wants
               "--governance-url", "http://127.0.0.1:9", "--buffer-dir", work / name, "--ready-file", ready],
        ready=file_exists(ready), env=env, cwd=REPO, log_path=work / f"{name}.log")
    process.start()
    return process, json.loads(ready.read_text())


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _throughput(work: Path, url: str, pid: int) -> tuple[float, float]:
    """(requests per CPU-second of the sidecar, requests per wall-clock second)."""
    script = work / "post.lua"
    errors = " + ".join(f"summary.errors.{kind}" for kind in ("status", "connect", "read", "write", "timeout"))
    script.write_text("\n".join([
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(APP_LINES)}",
        'wrk.headers["Content-Type"] = "application/x-ndjson"',
        "done = function(summary, latency, requests)",
        '  io.write(string.format("RPS %f REQUESTS %d ERR %d\\n", summary.requests / (summary.duration / 1e6),'
        f" summary.requests, {errors}))",
        "end", ""]))
    wrk = ManagedProcess("wrk", ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", script,
                                 f"{url}/logs/app?app=bench"], log_path=work / "wrk.log")
    cpu_before = _cpu_seconds(pid)
    wrk.start()
    try:
        if wrk.popen.wait(timeout=SECONDS + 30) != 0:
            raise RuntimeError(f"wrk failed: {wrk.output_tail()}")
    finally:
        wrk.stop()
    cpu = _cpu_seconds(pid) - cpu_before
    line = next(line for line in wrk.output().splitlines()[::-1] if line.startswith("RPS "))
    _, rps, _, requests, _, errors = line.split()
    if int(errors):
        raise RuntimeError(f"wrk saw {errors} failed requests: {wrk.output_tail()}")
    wrk.log_path.unlink()
    return int(requests) / cpu, float(rps)


def run() -> dict:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: run `make setup`")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with tempfile.TemporaryDirectory(prefix="ccr-bench-telemetry-") as tmp:
        work = Path(tmp)
        collector, collector_info = _sidecar(work, "collector", base_env)
        off_env = {**base_env, "OTEL_SDK_DISABLED": "true"}
        on_env = {**base_env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector_info["url"],
                  "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "bench-sidecar"}
        per_cpu: dict[str, list[float]] = {"off": [], "on": []}
        wall: dict[str, list[float]] = {"off": [], "on": []}
        sidecars: dict[str, tuple[ManagedProcess, dict]] = {}
        try:
            for mode, env in (("off", off_env), ("on", on_env)):
                sidecars[mode] = _sidecar(work, mode, env)
            for process, info in sidecars.values():
                _throughput(work, info["url"], process.pid)  # warm-up: lazy imports, the OTel batcher
            for round_number in range(ROUNDS):
                # the order alternates, so neither side always runs right after the other's load
                for mode in ("off", "on") if round_number % 2 == 0 else ("on", "off"):
                    process, info = sidecars[mode]
                    cpu_rate, rps = _throughput(work, info["url"], process.pid)
                    per_cpu[mode].append(cpu_rate)
                    wall[mode].append(rps)
                    print(f"   round {round_number + 1}: OTel {mode:<3} {cpu_rate:8.0f} req/CPU-s {rps:8.0f} req/s",
                          flush=True)
            received = collector.running()
        finally:
            for process, _info in sidecars.values():
                process.stop()
            collector.stop()
        if not received:
            raise RuntimeError(f"the collector died: {collector.output_tail()}")
    ratios = [on / off for off, on in zip(per_cpu["off"], per_cpu["on"], strict=True)]
    off, on = statistics.median(per_cpu["off"]), statistics.median(per_cpu["on"])
    print(f"   POST /logs/app (3 NDJSON lines), wrk 1 thread {CONNECTIONS} connections, {ROUNDS} rounds of "
          f"{SECONDS} s: median off {off:.0f} req/CPU-s ({statistics.median(wall['off']):.0f} req/s), "
          f"on {on:.0f} req/CPU-s ({statistics.median(wall['on']):.0f} req/s); ratio per round "
          f"{min(ratios):.3f}-{max(ratios):.3f}")
    return {"telemetry_overhead_ratio": round(statistics.median(ratios), 4),
            "telemetry_app_logs_req_per_cpu_s": round(off, 1)}
