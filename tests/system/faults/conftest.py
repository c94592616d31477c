"""Shared fixtures of the fault-injection suite: one set of stand-ins for the whole directory, one contract
every room of it runs (so rooms are brought up without a new governance setup each), and helpers to bring a
room up, read its state and tear it down.

The contract `FAULTS_SPEC` is a job with one datasink and an app that writes a file into it, closes it, then
listens on `APP_CLOSED_PORT` (the sign, seen from the host, that the file was closed) and sleeps: a running
app whose sink holds closed data, which each test then attacks.

The stand-ins are tests/system/conftest.py's, shared with the other room tests: a test that breaks one for
good (crashes CGS, say) must start stand-ins of its own. Pausing one (SIGSTOP) is fine if the test resumes
it (`paused`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sidecars.common.process import ProcessRecord, is_running
from sidecars.emulators.runner import records
from sidecars.localroom.netns import entered, netns_exists
from sidecars.localroom.steps import STATE_FILE
from tests.system.rooms import REPO, ccr

CONTRACT = "ccr-faults"
SINK = "consumer-output"
APP_CLOSED_PORT = 8089
#: what the app writes into the sink and closes, before it says so
SINK_BYTES = bytes(range(256)) * 4096 + b"the end"
APP_SCRIPT = f"""
import signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as PID 1 it would ignore a stop for 5 s
with open('/mnt/remote/{SINK}/closed.bin', 'wb') as f:
    f.write(bytes(range(256)) * 4096 + b'the end')
s = socket.socket()
s.bind(('127.0.0.1', {APP_CLOSED_PORT}))
s.listen(1)
time.sleep(3600)
"""


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)
    return value


def stand_in_pid(stand_ins: Path, name: str) -> int:
    """The pid of one stand-in (maa, keyvault, cgs, entra, azurite), checked to be still the same process."""
    for record in records(stand_ins):
        if record.name == name and is_running(record):
            return record.pid
    raise AssertionError(f"stand-in {name} is not running in {stand_ins}")


@contextlib.contextmanager
def paused(stand_ins: Path, name: str) -> Iterator[int]:
    """A stand-in frozen (SIGSTOP) for the block: it accepts connections and answers nothing."""
    pid = stand_in_pid(stand_ins, name)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass(frozen=True)
class Contract:
    spec: Path
    endpoints: str
    members: Path


@pytest.fixture(scope="session")
def contract(stand_ins: Path, tmp_path_factory) -> Contract:
    """The suite's contract, agreed in CGS, with the sink owner's key bound to its HOST_DATA."""
    work = tmp_path_factory.mktemp("faults-contract")
    data = yaml.safe_load((REPO / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["name"] = CONTRACT
    data["contract"]["id"] = CONTRACT
    data["datasources"] = []
    data["datasinks"] = [s for s in data["datasinks"] if s["name"] == SINK]
    data["application"]["command"] = ["python3", "-c", APP_SCRIPT]
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    endpoints = str(stand_ins / "endpoints.json")
    members = stand_ins / "members"
    ccr("images", "build", "cleanroomhello-job", "--pin", str(spec))
    host_data = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", endpoints).stdout.strip()
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(members))
    ccr("keys", "create-kek", "--endpoints", endpoints, "--name", "consumer-kek", "--host-data", host_data)
    (work / "empty").mkdir()
    ccr("data", "publish", str(work / "empty"), "--spec", str(spec), "--volume", SINK, "--endpoints", endpoints,
        "--dek-file", str(members / "consumer-dek.json"))
    return Contract(spec, endpoints, members)


@dataclass
class RunningRoom:
    run_dir: Path
    contract: Contract
    up_output: str

    @property
    def state(self) -> dict:
        return json.loads((self.run_dir / STATE_FILE).read_text())

    @property
    def netns(self) -> str:
        return self.state["netns"]

    def pid(self, name: str) -> int:
        record = next(ProcessRecord(**p) for p in self.state["processes"] if p["name"] == name)
        assert is_running(record), f"{name} is not running"
        return record.pid

    def status(self) -> dict:
        return json.loads(ccr("room", "status", "--run-dir", str(self.run_dir), "--json").stdout)

    def status_text(self) -> str:
        return ccr("room", "status", "--run-dir", str(self.run_dir)).stdout

    def app_listening(self) -> bool:
        return netns_exists(self.netns) and port_listening(self.netns, APP_CLOSED_PORT)

    def launcher(self) -> dict:
        return self.status()["sidecars"]["launcher"]["status"] or {}

    def down(self) -> subprocess.CompletedProcess:
        return ccr("room", "down", "--run-dir", str(self.run_dir), check=False)

    def download_sink(self, out: Path) -> bytes:
        """What the sink holds. A room whose volumes were killed signed no manifest (which is how a consumer
        tells an unfinished run from a finished one), so this is the download that says it is unverified."""
        result = ccr("data", "download", "-o", str(out), "--spec", str(self.contract.spec), "--volume", SINK,
                     "--endpoints", self.contract.endpoints, "--dek-file",
                     str(self.contract.members / "consumer-dek.json"), "--untrusted")
        assert '"verified": false' in result.stdout, result.stdout
        return (out / "closed.bin").read_bytes()


def port_listening(netns: str, port: int) -> bool:
    """Whether a TCP socket listens on `port` inside `netns` (read from the namespace's own /proc view: a
    connection would be reset by the firewall, which confines the app's answers too)."""
    with entered(netns):
        lines = Path("/proc/thread-self/net/tcp").read_text().splitlines()[1:]
    return any(f[1].endswith(f":{port:04X}") and f[3] == "0A" for f in (line.split() for line in lines))


def room_up(contract: Contract, run_dir: Path, *extra: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
    return ccr("room", "up", str(contract.spec), "--endpoints", contract.endpoints, "--run-dir", str(run_dir),
               *extra, check=check, timeout=timeout)


@pytest.fixture
def start_room(contract: Contract, tmp_path: Path) -> Iterator[Callable[..., RunningRoom]]:
    """Bring up rooms of the suite's contract (each its own run dir), the app's sink file closed; every room
    is taken down at the end."""
    rooms: list[RunningRoom] = []

    def start(name: str = "room") -> RunningRoom:
        run_dir = tmp_path / name
        result = room_up(contract, run_dir)
        room = RunningRoom(run_dir, contract, result.stdout)
        rooms.append(room)
        wait_for(room.app_listening, 30, "the app closed its sink file")
        return room

    yield start
    for room in rooms:
        if (room.run_dir / STATE_FILE).exists():
            room.down()
