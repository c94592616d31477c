"""Emits a room's startup the way the sidecars do, through `sidecars.common.otel`: one trace across two
processes (the launcher's steps, and skr's attestation continued from TRACEPARENT), log records and
metrics, exported over OTLP to whatever OTEL_EXPORTER_OTLP_* names.

    python startup_room.py launcher [--fail-at STEP]
    python startup_room.py skr          (started by the launcher role, with TRACEPARENT set)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from sidecars.common.errors import CcrError, ProcessError
from sidecars.common.otel import attach_parent_from_env, setup_telemetry, step_span, traceparent_env
from sidecars.common.process import ManagedProcess

# The launcher-side steps and how long each stands in for (attest runs in the skr process).
STEPS = {"firewall": 0.004, "consent": 0.015, "key-release orders": 0.03, "key-release results": 0.025,
         "mount": 0.04, "proxy": 0.02, "launch": 0.01}


def work(seconds: float) -> None:
    """Stands in for a step's real work, so the trace has visible durations."""
    time.sleep(seconds)


def skr() -> int:
    attach_parent_from_env()
    telemetry = setup_telemetry("skr")
    with step_span(telemetry.tracer, "attest", platform="mock-snp"):
        with step_span(telemetry.tracer, "snp.report"):
            work(0.004)
        with step_span(telemetry.tracer, "maa.token"):
            work(0.012)
    logging.getLogger("ccr.skr").info("attested: MAA token issued")
    telemetry.shutdown()
    return 0


def launcher(fail_at: str | None) -> int:
    telemetry = setup_telemetry("launcher")
    tracer, log = telemetry.tracer, logging.getLogger("ccr.launcher")
    logging.getLogger().setLevel(logging.INFO)
    steps_done = telemetry.meter.create_counter("ccr.startup.steps", unit="1", description="startup steps done")
    step_time = telemetry.meter.create_histogram("ccr.startup.step.duration", unit="ms")
    try:
        with step_span(tracer, "room.startup", room="demo-room"):
            for step in ("firewall", "attest", *list(STEPS)[1:]):
                started = time.monotonic()
                with step_span(tracer, step, step=step):
                    if step == "attest":
                        child = ManagedProcess("skr", [sys.executable, __file__, "skr"],
                                               env={**os.environ, **traceparent_env()})
                        child.start()
                        if child.popen.wait(timeout=60) != 0:
                            raise ProcessError(f"skr failed: {child.output_tail()}")
                    else:
                        work(STEPS[step])
                    if step == fail_at:
                        raise CcrError(f"{step} failed: key release denied by policy (x-ms-sevsnpvm-hostdata)")
                log.info("step %s done", step)
                steps_done.add(1, {"step": step})
                step_time.record((time.monotonic() - started) * 1000, {"step": step})
    except CcrError as exc:
        log.error("room startup failed: %s", exc)
    telemetry.shutdown()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("launcher", "skr"))
    parser.add_argument("--fail-at")
    args = parser.parse_args()
    return skr() if args.role == "skr" else launcher(args.fail_at)


if __name__ == "__main__":
    sys.exit(main())
