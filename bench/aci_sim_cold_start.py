"""`aci_sim_cold_start_s`: from `ccr aci run TEMPLATE` to the app running, for the cleanroomhello-job room,
through the local Confidential ACI simulator; written with the same room's `ccr room up` to app
running (`aci_sim_room_up_baseline_s`, as bench.room's `cold_start_s` measures it), measured in the same run on
the same prepared contract, and their ratio (`aci_sim_cold_start_ratio`).

The room is prepared once (the demo's steps 1-4), its ARM template rendered (`ccr spec render arm`) and
accepted in CGS as the contract's deployment; then the group is deployed and deleted several times. The
figure is the median time from running `ccr aci run` until the launcher reports the app started (it
checks the policy of every container, makes the netns, runs the firewall init container, starts the
sidecars under their template CPU caps, attests, releases keys, mounts, launches).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.room import REPO, _byte_compile, _ccr
from examples.demo_support import load_demo
from sidecars.aci.group import netns_name
from sidecars.localroom.roomhttp import room_status

RUNS = 3
LAUNCHER_PORT = 8200
APP_STARTED = ("running", "exited", "stopped")
TIMEOUT_S = 300.0


def _launcher_status(netns: str) -> str:
    answer = room_status(netns, LAUNCHER_PORT)
    if answer is None or answer.body[:1] != b"{":
        return ""
    body = json.loads(answer.body)
    return str(body.get("status")) if body.get("app") else ""


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def run() -> dict[str, float]:
    demo = load_demo("cleanroomhello-job")
    run_dir = Path(tempfile.mkdtemp(prefix="ccr-bench-aci-"))
    try:
        _byte_compile()
        room = demo.prepare(run_dir)
        arm = run_dir / "arm"
        _check(_ccr("spec", "render", "arm", str(room.spec), "--endpoints", room.endpoints, "-o", str(arm)), "render")
        template = arm / "cleanroom-arm-template.json"
        _check(_ccr("governance", "setup", str(room.spec), "--endpoints", room.endpoints, "--members-dir",
                    str(run_dir / "members"), "--deployment", str(template)), "governance setup --deployment")
        contract = demo.contract_id(room.spec)
        netns = netns_name(json.loads(template.read_text())["parameters"]["containerGroupName"]["defaultValue"])
        timings = []
        for attempt in range(RUNS):
            state_dir = run_dir / f"group{attempt}"
            started = time.monotonic()
            deployed = _ccr("aci", "run", str(template), "--endpoints", room.endpoints, "--contract", contract,
                            "--state-dir", str(state_dir))
            try:
                _check(deployed, "ccr aci run")
                deadline = started + TIMEOUT_S
                while _launcher_status(netns) not in APP_STARTED:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the app did not start within {TIMEOUT_S:g} s")
                    time.sleep(0.1)
                timings.append(time.monotonic() - started)
            finally:
                _ccr("aci", "delete", "--state-dir", str(state_dir))
        median = statistics.median(timings)
        print(f"   ccr aci run to app running: {', '.join(f'{t:.2f}' for t in timings)} s (median {median:.2f})")
        baseline = []
        for attempt in range(RUNS):
            room_dir = run_dir / f"room{attempt}"
            started = time.monotonic()
            up = _ccr("room", "up", str(room.spec), "--endpoints", room.endpoints, "--run-dir", str(room_dir))
            baseline.append(time.monotonic() - started)
            _ccr("room", "down", "--run-dir", str(room_dir))
            _check(up, "ccr room up")
        room_median = statistics.median(baseline)
        print(f"   next to cold_start_s (ccr room up to app running, same run): {room_median:.2f} s; "
              f"the simulator takes x{median / room_median:.1f}")
        return {"aci_sim_cold_start_s": round(median, 3), "aci_sim_room_up_baseline_s": round(room_median, 3),
                "aci_sim_cold_start_ratio": round(median / room_median, 2)}
    finally:
        subprocess.run([sys.executable, "-m", "sidecars", "emulators", "stop", "--run-dir", str(run_dir)],
                       cwd=REPO, capture_output=True)
