"""Each sidecar killed (SIGKILL) while the app runs: the room fails closed as the sidecar's record says
(`Sidecar.on_failure`), the loss is audited in CGS (or, with governance gone, logged and said so), the sink
keeps every byte the app closed before, `ccr room status` names the dead sidecar, and `ccr room down` still
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sidecars.common.process import ProcessRecord, is_running
from sidecars.launcher.podman import Podman
from sidecars.localroom.netns import netns_exists, processes_in

from .conftest import CONTRACT, SINK_BYTES, RunningRoom, ccr, paused, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]
ATTACKS = Path(__file__).resolve().parents[1] / "firewall" / "attacks.py"
APP_UID = 1000
#: the watchdog's detection (lost after 2 s, asked every 0.5 s) plus the app's stop (2 s grace) and slack
STOPPED_WITHIN_S = 20


def kill(room: RunningRoom, name: str) -> None:
    os.kill(room.pid(name), signal.SIGKILL)


def losses_handled(room: RunningRoom, *names: str) -> dict | None:
    """The launcher's record of the lost sidecars once each of `names` is handled (its audit tried)."""
    lost = room.launcher().get("sidecars_lost") or {}
    return lost if all(lost.get(n, {}).get("audited") is not None for n in names) else None


def losses_audited(room: RunningRoom) -> dict[str, dict]:
    """sidecar → the data of its `sidecar-lost` (or `launcher-lost`) event in CGS, for this room's app."""
    out = ccr("governance", "events", "list", CONTRACT, "--endpoints", room.contract.endpoints, "--identity",
              str(room.contract.members / "consumer"), "--json").stdout
    events, _end = json.JSONDecoder().raw_decode(out)  # a line about the verified chain follows
    found = {}
    for event in events:
        data = event.get("data")
        if isinstance(data, dict) and data.get("container") == room.state["container"]:
            if data.get("step") == "sidecar-lost":
                found[data["sidecar"]] = data
            elif data.get("step") == "launcher-lost":
                found["launcher"] = data
    return found


def attack(netns: str, *args: str) -> dict:
    """attacks.py as the app's uid inside the room."""
    argv = ["ip", "netns", "exec", netns, "setpriv", "--reuid", str(APP_UID), "--regid", str(APP_UID),
            "--clear-groups", sys.executable, str(ATTACKS), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"attack {args} crashed: {done.stderr}"
    return json.loads(done.stdout)


class HostListener:
    """A TCP listener on the room's host-side link address: whatever reaches it left the room."""

    def __init__(self, host: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.seen.append(peer[0])
            conn.sendall(b"outside\n")
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_losing_reporting_sidecars_keeps_the_app_and_the_network_closed_then_the_launchers_guard_stops_it(
        start_room, stand_ins):
    """skr and identity killed: the app goes on (nothing it guards is gone), each loss is audited in CGS or,
    while CGS answers nothing, said to be not audited (status and log) rather than dropped; `ccr room status`
    names each as killed by SIGKILL. The firewall, an init container, exited 0 before anything else started:
    the app's egress is blocked all the same (its rules live in the netns, not in its process), and no
    watchdog mistakes it for a lost sidecar. Then the launcher killed: its guard removes the app and audits
    it."""
    room = start_room()
    with paused(stand_ins, "cgs"):  # mid-run, CGS answers nothing
        kill(room, "identity")
        identity = wait_for(lambda: losses_handled(room, "identity"), 40, "the loss of identity handled")["identity"]
    assert identity["audited"] is False and not identity["app_stopped"]
    assert "the loss of sidecar identity is NOT audited in CGS" in (room.run_dir / "logs" / "launcher.log").read_text()

    listener = HostListener(room.state["host_v4"])
    try:
        before = attack(room.netns, "tcp", room.state["host_v4"], str(listener.port))
        kill(room, "skr")
        lost = wait_for(lambda: losses_handled(room, "skr"), 20, "the watchdog reports it lost")
        assert lost["skr"]["policy"] == "report" and not lost["skr"]["app_stopped"] and lost["skr"]["audited"], lost
        assert "firewall" not in lost
        assert room.app_listening() and room.launcher()["status"] == "running"
        after = attack(room.netns, "tcp", room.state["host_v4"], str(listener.port))
        udp = attack(room.netns, "udp", room.state["host_v4"], "53")
        assert listener.seen == [], f"the app reached the host with the firewall's process gone: {listener.seen}"
        assert before.get("banner") != "outside" and after.get("banner") != "outside", (before, after)
        assert not udp["ok"], udp
    finally:
        listener.close()
    text = room.status_text()
    for name in ("skr", "identity"):
        assert "killed by SIGKILL" in next(line for line in text.splitlines() if line.strip().startswith(name))
    firewall = next(line for line in text.splitlines() if line.strip().startswith("firewall"))
    assert "exited with code 0" in firewall or "done (an init container" in firewall, firewall
    assert "enforced" in firewall, firewall
    assert "lost: skr (report; app kept; audited in CGS)" in text, text
    assert "lost: identity (report; app kept; NOT audited in CGS" in text, text
    assert set(losses_audited(room)) == {"skr"}

    container = room.state["container"]
    kill(room, "launcher")
    wait_for(lambda: not Podman().container_exists(container), STOPPED_WITHIN_S, "the app container removed")
    assert not room.app_listening()
    wait_for(lambda: "launcher" in losses_audited(room), 15, "the launcher's loss audited in CGS")
    text = room.status_text()
    assert "killed by SIGKILL" in next(line for line in text.splitlines() if line.strip().startswith("launcher"))
    assert f"container {container} absent" in text, text


@pytest.mark.parametrize("name", ["volumes", "proxy", "telemetry"])
def test_losing_a_guarding_sidecar_stops_the_app_and_is_audited(start_room, name, tmp_path):
    """For volumes, the whole container dies as on C-ACI (the sidecar and its mount process SIGKILLed at once,
    nothing flushed at exit): what the app closed before is in the sink all the same."""
    room = start_room()
    if name == "volumes":
        mounts = [pid for pid in processes_in(room.netns)
                  if Path(f"/proc/{pid}/comm").read_text().startswith("ccr-mount-")]
        assert len(mounts) == 1, mounts
        os.kill(mounts[0], signal.SIGKILL)
    kill(room, name)
    wait_for(lambda: not room.app_listening(), STOPPED_WITHIN_S, f"the app stopped after {name} died")
    lost = wait_for(lambda: losses_handled(room, name), 15, "the launcher handled the loss")[name]
    assert (lost["policy"], lost["app_stopped"], lost["audited"]) == ("stop-app", True, True), lost
    launcher = room.launcher()
    assert launcher["status"] == "stopped" and f"sidecar {name} lost" in launcher["error"], launcher
    assert not Podman().container_exists(room.state["container"])
    text = room.status_text()
    assert "killed by SIGKILL" in next(line for line in text.splitlines() if line.strip().startswith(name)), text
    assert f"lost: {name} (stop-app; app stopped; audited in CGS)" in text, text
    assert losses_audited(room)[name]["app_stopped"] is True
    state = room.state
    orphans = processes_in(room.netns)  # e.g. a killed proxy's Envoy: down stops them too
    assert room.down().returncode == 0
    assert_nothing_left(state)
    assert not [pid for pid in orphans if alive(pid)], "a process of the room outlived it"
    if name == "volumes":
        assert room.download_sink(tmp_path / "sink") == SINK_BYTES


def test_losing_governance_stops_the_app_and_says_the_loss_is_not_audited(start_room):
    room = start_room()
    kill(room, "governance")
    lost = wait_for(lambda: losses_handled(room, "governance"), STOPPED_WITHIN_S, "the loss handled")
    assert lost["governance"]["audited"] is False and lost["governance"]["app_stopped"] is True
    assert room.launcher()["status"] == "stopped" and not room.app_listening()
    assert "lost: governance (stop-app; app stopped; NOT audited in CGS" in room.status_text()
    log = (room.run_dir / "logs" / "launcher.log").read_text()
    assert "the loss of sidecar governance is NOT audited in CGS" in log
    assert "governance" not in losses_audited(room)


def alive(pid: int) -> bool:
    """Running: not gone, not a zombie (an orphan's parent, init here, may reap it late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def assert_nothing_left(state: dict) -> None:
    assert not netns_exists(state["netns"]), "the room's network namespace is still there"
    for process in state["processes"]:
        assert not is_running(ProcessRecord(**process)), f"{process['name']} is still running"
    assert not Podman().container_exists(state["container"]), "the app container is still there"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    assert not [m for m in mounts if m.startswith(state["mount_root"])], "a mount of the room is still there"
