"""`cold_start_s`: from `ccr room up` to the app process running, for the cleanroomhello-job room; and
`cold_start_s_3_sources`: the same for a room of three datasources, one sink and a telemetry log sink (the
job's spec with a third source, the publisher's history, and the consumer's log sink; the proxy and the
telemetry sidecar run in every room).

Images, stand-ins, the contract, keys and data are prepared once per room (the demo's steps 1-4); then the
room is brought up and down several times and the median time from running `ccr room up` until it reports
the app running is the figure. The per-step lines of the median run are printed (C-ACI takes minutes).

The images' facts are pinned (a layer lock, `CCR_LAYER_LOCK`) as the contract saw them: other builds of
the shared image tags on this machine (`ccr images build --sidecars` from another checkout) would
otherwise change the room's HOST_DATA under the bench, and CGS would rightly refuse the room. `ccr room up`
renders the same policy either way; it renders while the network and the firewall are set up.
"""

from __future__ import annotations

import compileall
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from examples.demo_support import load_demo

REPO = Path(__file__).resolve().parents[1]
RUNS = 5
STEP = re.compile(r"^\s*(ok|FAILED)\s+(.*?)\s+(\d+) ms$")


def _ccr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars", *args], cwd=REPO, capture_output=True, text=True,
                          env=env)


def _byte_compile() -> None:
    """The project's modules compiled, as an installed package's are (pip compiles those): where
    PYTHONDONTWRITEBYTECODE is set, every process of the room would otherwise compile them again."""
    compileall.compile_dir(REPO / "sidecars", quiet=1)


def _pin_images(room, lock_file: Path) -> None:
    """Write the layer lock of the room's images, checking they still are the ones the contract names."""
    from sidecars.renderings.layers import LockedImages
    from sidecars.renderings.render import default_images, render
    from sidecars.spec import endpoint_variables, load_spec

    spec = load_spec(room.spec, variables=endpoint_variables(room.endpoints))
    images = default_images()
    rendering = render(spec, images)
    if rendering.host_data != room.host_data:
        raise RuntimeError("the room's images were rebuilt while the bench prepared it (HOST_DATA "
                           f"{rendering.host_data} is not the contract's {room.host_data}): run it again")
    lock_file.write_text(LockedImages({c.image: images.resolve(c.image) for c in rendering.group.containers}).dump())


def _three_sources_spec(demo: ModuleType, path: Path) -> tuple[tuple[Any, ...], Any]:
    """The job's spec with a third datasource (the publisher's history: its data again, under a key of its
    own) and the consumer's telemetry log sink, written to PATH; its volumes and log sink for the demo's
    `prepare`."""
    spec = yaml.safe_load((REPO / "examples" / "cleanroomhello-job" / "spec.yaml").read_text())
    spec["name"] = "cleanroomhello-job3"
    spec["contract"]["id"] = "collab-hello-job3"
    history = copy.deepcopy(spec["datasources"][0])
    history["name"] = history["store"]["container"] = "publisher-history"
    history["encryption"]["key"]["dek_secret_name"] = "publisher-history-dek"
    spec["datasources"].append(history)
    sink = spec["datasinks"][0]
    log_store = {**sink["store"], "container": "consumer-logs"}
    log_key = {**sink["encryption"]["key"], "dek_secret_name": "consumer-logs-dek"}
    spec["telemetry"] = {"log_sink": {"store": log_store, "encryption": {**sink["encryption"], "key": log_key}}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    volumes = (*demo.VOLUMES, demo.PartyVolume("publisher", "publisher-history", "publisher",
                                               "publisher-history-dek.json"))
    return volumes, demo.LogSink("consumer", "consumer-logs", "consumer-logs-dek")


def _timeline(room_dir: Path, started_at: float) -> list[tuple[float, str]]:
    """Milliseconds from running `ccr room up` until each sidecar was ready and each volume mounted (when the
    room wrote their ready and status files), then the launcher's own steps with their durations (its
    /status): the profile of one start."""
    written = [(p.stat().st_mtime, f"{p.stem} ready") for p in (room_dir / "ready").glob("*.json")]
    written += [(p.stat().st_mtime, f"{p.name.removesuffix('.status.json')} mounted")
                for p in (room_dir / "volumes").glob("*.status.json")]
    marks = sorted(((at - started_at) * 1000, what) for at, what in written)
    status = _ccr("room", "status", "--run-dir", str(room_dir), "--json")
    if status.returncode == 0:
        launcher = (json.loads(status.stdout)["sidecars"].get("launcher") or {}).get("status") or {}
        marks += [(step["ms"], f"launcher step {step['step']} (its duration)") for step in launcher.get("steps", [])
                  if step.get("ok")]
    return marks


def _cold_starts(room, run_dir: Path, figure: str) -> float:
    """Bring the prepared room up and down RUNS times: the median seconds to the app running, printed with
    every run's, and the median run's steps and timeline."""
    _pin_images(room, run_dir / "layers.lock.json")
    env = {**os.environ, "CCR_LAYER_LOCK": str(run_dir / "layers.lock.json")}
    runs: list[tuple[float, str, list[tuple[float, str]]]] = []
    for attempt in range(RUNS):
        room_dir = run_dir / f"room{attempt}"
        started_at, started = time.time(), time.monotonic()
        up = _ccr("room", "up", str(room.spec), "--endpoints", room.endpoints, "--run-dir", str(room_dir), env=env)
        elapsed = time.monotonic() - started
        timeline = _timeline(room_dir, started_at) if up.returncode == 0 else []
        _ccr("room", "down", "--run-dir", str(room_dir))
        if up.returncode != 0:
            raise RuntimeError(f"ccr room up failed:\n{up.stdout}\n{up.stderr}")
        runs.append((elapsed, up.stdout, timeline))
    runs.sort(key=lambda run: run[0])
    median_s, median_out, median_timeline = runs[len(runs) // 2]
    print(f"   {figure}: ccr room up to app running: {', '.join(f'{run[0]:.2f}' for run in runs)} s "
          f"(median {median_s:.2f}); its steps:")
    for line in median_out.splitlines():
        match = STEP.match(line)
        if match:
            print(f"     {match.group(2):<55} {int(match.group(3)):>6} ms")
    print("   its timeline (ms after ccr room up ran):")
    for at, what in median_timeline:
        print(f"     {what:<55} {at:>6.0f}")
    return round(statistics.median(run[0] for run in runs), 3)


def run() -> dict[str, float]:
    demo = load_demo("cleanroomhello-job")
    _byte_compile()
    figures: dict[str, float] = {}
    for figure in ("cold_start_s", "cold_start_s_3_sources"):
        run_dir = Path(tempfile.mkdtemp(prefix="ccr-bench-room-"))
        try:
            if figure == "cold_start_s":
                room = demo.prepare(run_dir)
            else:
                volumes, log_sink = _three_sources_spec(demo, run_dir / "spec3.yaml")
                room = demo.prepare(run_dir, run_dir / "spec3.yaml", volumes, log_sink)
            figures[figure] = _cold_starts(room, run_dir, figure)
        finally:
            _ccr("emulators", "stop", "--run-dir", str(run_dir))
    return figures
