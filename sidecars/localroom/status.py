"""`ccr room status`: every process of a room as its run directory records it (running, exited with a code,
killed by a signal), each sidecar's own `/status`, the app container, and the launcher's watchdog's view
(the sidecars it lost and what it did about it).

A process's end comes from the fork server it was forked from: it reaped it and keeps its exit status
(`sidecars.common.forkserver`, op "poll"). When the fork server itself is gone, that status went with it and
the process is reported `gone`.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from ..common.errors import ConfigError, ProcessError
from ..common.forkserver import ForkServerClient
from ..common.process import ProcessRecord, is_running
from ..launcher.podman import Podman
from ..room.registry import REGISTRY
from .netns import netns_exists
from .roomhttp import room_status
from .steps import STATE_FILE, RoomState


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def process_state(record: ProcessRecord, fork_server: ForkServerClient | None) -> dict[str, Any]:
    """`{"state": "running"|"exited"|"killed"|"gone", "pid", "exit_code"?, "signal"?}`."""
    if is_running(record):
        return {"state": "running", "pid": record.pid}
    code = None
    if fork_server is not None:
        try:
            code = fork_server.returncode(record.pid)
        except ProcessError:  # not its child (the fork server itself), or the server is gone
            code = None
    if code is None:
        return {"state": "gone", "pid": record.pid}
    if code < 0:
        return {"state": "killed", "pid": record.pid, "signal": signal_name(-code)}
    return {"state": "exited", "pid": record.pid, "exit_code": code}


def describe(state: dict[str, Any]) -> str:
    """One phrase for a process state, as `ccr room status` prints it."""
    if state["state"] == "running":
        return f"running (pid {state['pid']})"
    if state["state"] == "killed":
        return f"killed by {state['signal']}"
    if state["state"] == "exited":
        return f"exited with code {state['exit_code']}"
    if state["state"] == "not started":
        return "not started"
    if state["state"] == "done":
        return "done (an init container: see its ready file)"
    return "gone (exit status unknown: its fork server is gone)"


def room_report(run_dir: Path) -> dict[str, Any]:
    state = RoomState.load(run_dir.resolve() / STATE_FILE)
    if not state.data:
        raise ConfigError(f"no room in {run_dir}")
    netns = state.data.get("netns")
    in_netns = bool(netns) and netns_exists(netns)
    socket_path = state.data.get("fork_server")
    fork_server = ForkServerClient(socket_path) if socket_path and Path(socket_path).exists() else None
    processes: dict[str, dict[str, Any]] = {}
    try:
        for item in state.data.get("processes", []):
            record = ProcessRecord(**item)
            processes[record.name] = process_state(record, fork_server)
    finally:
        if fork_server is not None:
            fork_server.close()
    report: dict[str, Any] = {"room": state.data.get("name"), "netns": netns, "sidecars": {},
                              "processes": processes}
    for sidecar in (s for wave in REGISTRY.waves() for s in wave):
        answer = room_status(netns, sidecar.port(sidecar.status_port)) if in_netns else None
        report["sidecars"][sidecar.name] = {
            "process": processes.get(sidecar.name, {"state": "not started"}),
            "http": None if answer is None else answer.status,
            "status": None if answer is None else _body(answer.body)}
    # The platform kind (sev-snp, simulated, mock) the room's evidence comes from, as skr reports it.
    skr_status = report["sidecars"].get("skr", {}).get("status")
    report["platform"] = skr_status.get("platform") if isinstance(skr_status, dict) else None
    for name, entry in report["sidecars"].items():
        if REGISTRY.get(name).init_container and entry["status"] is None:
            # An init container serves nothing: what it did is in its ready file (written just before it
            # exits 0; one that finished before `ccr room up` recorded it has no process record).
            entry["status"] = _ready_file(Path(state.data.get("run_dir") or run_dir), name)
            if entry["process"]["state"] == "not started" and entry["status"] is not None:
                entry["process"] = {"state": "done"}
    container = state.data.get("container")
    report["app_container"] = {"name": container,
                               "exists": bool(container) and in_netns and Podman().container_exists(container)}
    return report


def _ready_file(run_dir: Path, name: str) -> Any:
    try:
        return json.loads((run_dir / "ready" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")[:300]
