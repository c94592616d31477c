"""A cluster of rooms: one Spark query across a driver room and two attested executor rooms."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from sidecars.cluster.governance import host_data_of
from sidecars.cluster.ports import MASTER_PORT, MASTER_UI_PORT, WORKER_UI_PORT
from sidecars.cluster.rooms import executor_policy, mock_evidence
from sidecars.common.errors import PolicyDenied
from sidecars.localroom.netns import NETNS_DIR, entered, processes_in
from sidecars.spec import Cluster
from tests.system.cluster.conftest import ALTERED_IMAGE, DRIVER_SPEC_SHA256, MARKER, processes_with

pytestmark = [pytest.mark.root, pytest.mark.slow]

SQL = "SELECT name, COUNT(*) AS n, SUM(CAST(amount AS INT)) AS total FROM people GROUP BY name"


def expected(data) -> list[tuple[str, str, str]]:
    counts: Counter = Counter()
    totals: Counter = Counter()
    with open(data) as source:
        for row in csv.DictReader(source):
            counts[row["name"]] += 1
            totals[row["name"]] += int(row["amount"])
    return sorted((name, counts[name], totals[name]) for name in counts)


def test_the_answer_is_the_single_room_answer(room_cluster):
    answer = room_cluster.run(SQL)
    assert answer["rows"] == expected(room_cluster.data)
    assert any(row[0] == MARKER for row in answer["rows"])
    # both executor rooms wrote parts of it (two partitions, one core each)
    assert len(list((room_cluster.sink / answer["run_id"]).glob("part-*.csv"))) == 2


PAUSED_SQL = ("SELECT name, COUNT(*) AS n, SUM(CAST(amount AS INT)) AS total FROM "
              "(SELECT /*+ REPARTITION(8) */ ccr_pause(name) AS name, amount FROM people) GROUP BY name")


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_ui_and_rest_ports_are_closed_outside_the_driver_room(room_cluster):
    rooms = room_cluster.rooms
    driver, executor = rooms.net.driver.address, rooms.net.executors[0]

    def reachable(netns: str, address: str, port: int) -> bool:
        with entered(netns), socket.socket() as sock:
            sock.settimeout(1.5)
            try:
                sock.connect((address, port))
            except OSError:
                return False
            return True

    # a positive control: the Spark master port is open to an executor room, the UI answers inside the driver
    assert reachable(executor.netns, driver, MASTER_PORT)
    assert reachable(rooms.net.driver.netns, driver, MASTER_UI_PORT)
    for port in (MASTER_UI_PORT, 6066, 4040, 22):
        assert not reachable(executor.netns, driver, port), port
    assert not reachable(rooms.net.driver.netns, executor.address, WORKER_UI_PORT)


def test_an_executor_with_another_policy_gets_no_secret_and_cannot_register(room_cluster):
    """The HOST_DATA the driver admits is the members' accepted executor policy, read from CGS; the refusal
    is in the contract's audit log in CGS with the claim that did not match."""
    rooms = room_cluster.rooms
    altered = host_data_of(executor_policy(
        Cluster(executors=2, executor_image=ALTERED_IMAGE, executor_resources={"cpu": 1, "memory_gb": 1}),
        DRIVER_SPEC_SHA256))
    intruder = rooms.add_executor_room()
    try:
        with pytest.raises(PolicyDenied, match="x-ms-sevsnpvm-hostdata"):
            rooms.join_executor(intruder, mock_evidence(room_cluster.platform, altered))
        records = [json.loads(line) for line in rooms.audit_path.read_text().splitlines()]
        refused = [r for r in records if r["event"] == "cluster.executor.refused"]
        assert refused[-1]["claim"] == "x-ms-sevsnpvm-hostdata"
        assert refused[-1]["presented"] == altered
        assert refused[-1]["expected"] == room_cluster.executor_host_data
        assert refused[-1]["peer"] == intruder.address
        in_cgs = [e["data"] for e in room_cluster.governance.events() if e["scope"] == "cluster"]
        assert in_cgs[-1] == refused[-1]
        # it tries anyway, with a secret of its own: the master refuses the handshake
        rooms.start_worker(intruder, secrets.token_bytes(32))
        log = rooms.room_dir(intruder) / "worker.log"
        _wait_for(lambda: log.exists() and b"Connecting to master" in log.read_bytes(), 60, "the intruder's worker")
        time.sleep(8)
        assert intruder.address not in rooms.alive_workers()
        assert len(rooms.alive_workers()) == 2
    finally:
        rooms.remove_room(intruder)


def test_a_member_cannot_swap_the_accepted_executor_policy(room_cluster):
    """bob proposes the altered image's executor policy under the accepted document's id: CGS rejects it (an
    accepted document is never re-proposed), and the driver still admits only the accepted policy."""
    rooms = room_cluster.rooms
    altered_policy = executor_policy(
        Cluster(executors=2, executor_image=ALTERED_IMAGE, executor_resources={"cpu": 1, "memory_gb": 1}),
        DRIVER_SPEC_SHA256)
    proposal = room_cluster.governance.propose_executor_policy(altered_policy, by="bob")
    assert proposal["proposalState"] == "Rejected"
    intruder = rooms.add_executor_room()
    try:
        with pytest.raises(PolicyDenied, match=room_cluster.executor_host_data):
            rooms.join_executor(intruder, mock_evidence(room_cluster.platform, host_data_of(altered_policy)))
    finally:
        rooms.remove_room(intruder)


def test_no_marker_between_rooms_nor_in_executor_scratch_files(room_cluster, tmp_path):
    rooms = room_cluster.rooms

    def capture(path: Path) -> subprocess.Popen:
        process = subprocess.Popen(["ip", "netns", "exec", rooms.net.netns, "tcpdump", "-i", "any", "-s", "0",
                                    "-B", "65536", "-U", "-w", str(path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert process.stderr is not None
        for _ in range(5):  # tcpdump says "listening on any" once its socket is attached
            if b"listening on" in process.stderr.readline():
                break
        time.sleep(0.3)
        return process

    def stop(process: subprocess.Popen) -> None:
        time.sleep(1.5)  # the ring's last block is handed over after its timeout (1 s)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        # a packet the kernel dropped is one the check never saw: a capture with drops proves nothing
        assert b"\n0 packets dropped by kernel" in b"\n" + err, err

    # positive control: the capture sees a payload sent in clear between two rooms of the network
    control = tmp_path / "control.pcap"
    tcpdump = capture(control)
    with entered(rooms.net.executors[0].netns):
        httpx.post(rooms.admission_url, content=f'{{"marker": "{MARKER}"}}', timeout=5)
    stop(tcpdump)
    assert MARKER.encode() in control.read_bytes()

    # the executors' shuffle files exist only while the application runs: read them all along
    seen: dict[str, bool] = {}
    running = threading.Event()
    running.set()

    def scan_scratch() -> None:
        while running.is_set():
            for room in rooms.net.executors:
                for folder in ("scratch", "work"):
                    for path in (rooms.room_dir(room) / folder).rglob("*"):
                        with contextlib.suppress(OSError):
                            if path.is_file():
                                seen[str(path)] = seen.get(str(path), False) or MARKER.encode() in path.read_bytes()
            time.sleep(0.1)

    scanner = threading.Thread(target=scan_scratch, daemon=True)
    pcap = tmp_path / "query.pcap"
    tcpdump = capture(pcap)
    scanner.start()
    try:
        answer = room_cluster.run(PAUSED_SQL, pause_s=0.01)
    finally:
        running.clear()
        scanner.join(timeout=30)
        stop(tcpdump)
    assert answer["rows"] == expected(room_cluster.data)
    traffic = pcap.read_bytes()
    assert len(traffic) > 50_000, "the capture saw no Spark traffic"
    assert MARKER.encode() not in traffic
    shuffle_files = [path for path in seen if "/blockmgr-" in path and path.endswith(".data")]
    assert shuffle_files, f"no executor shuffle file was seen (files: {sorted(seen)[:20]})"
    assert [path for path, found in seen.items() if found] == []


def test_an_executor_room_killed_mid_query_does_not_change_the_answer(room_cluster):
    rooms = room_cluster.rooms
    victim = rooms.net.executors[-1]
    run_id = "run-executor-killed"
    process = room_cluster.run(PAUSED_SQL, run_id=run_id, pause_s=0.03, wait=False)
    _wait_for(lambda: processes_with(victim.netns, "pyspark") != [], 120, "tasks running in the victim room")
    killed = rooms.kill_room(victim)
    assert killed
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    assert rooms.settle_run(run_id, room_cluster.sink, process) == "succeeded"
    assert room_cluster.published(run_id) == expected(room_cluster.data)
    # the room comes back (attests again) for the tests after this one
    rooms.join_executor(victim, mock_evidence(room_cluster.platform, room_cluster.executor_host_data))
    rooms.wait_for_workers(2)


def test_a_killed_driver_room_fails_the_run_and_publishes_nothing(room_cluster):
    """The driver room dies mid-query (every process in it: the Spark master, the driver application, the
    admission service): the run is `failed`, nothing of it is in the sink, staged parts included."""
    rooms = room_cluster.rooms
    run_id = "run-driver-killed"
    process = room_cluster.run(PAUSED_SQL, run_id=run_id, pause_s=0.04, wait=False)
    executor = rooms.net.executors[0]
    _wait_for(lambda: processes_with(executor.netns, "pyspark") != [], 120, "tasks running")
    _wait_for(lambda: list(room_cluster.sink.glob(f".staging-{run_id}/**/*")) != [], 120, "the staging folder")
    killed = rooms.kill_room(rooms.net.driver)
    assert process.pid in killed and len(killed) >= 3  # ip netns exec's python, its JVM, the master
    assert not processes_in(rooms.net.driver.netns)
    process.wait(timeout=30)
    assert process.returncode != 0
    # the executors' tasks die with the application's driver; nothing publishes it later either
    time.sleep(5)
    assert rooms.settle_run(run_id, room_cluster.sink, process) == "failed"
    assert [p.name for p in room_cluster.sink.iterdir() if run_id in p.name] == []
    in_cgs = [e["data"] for e in room_cluster.governance.events() if e["scope"] == "cluster"]
    assert in_cgs[-1]["event"] == "cluster.run.failed" and in_cgs[-1]["run_id"] == run_id
    # the room comes back for the tests after this one: its admission service and master again
    rooms.restart_driver_room()
    rooms.wait_for_workers(2)
    assert room_cluster.run(SQL)["rows"] == expected(room_cluster.data)


def _alive(pid: int) -> bool:
    """Running, not a zombie: this test process started the rooms' daemons and reaps them only later."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_down_leaves_nothing_of_any_room(room_cluster):
    """`ccr cluster down NAME` from another process (the one that brought the cluster up may be gone)."""
    rooms = room_cluster.rooms
    names = [room.netns for room in rooms.net.rooms] + [rooms.net.netns]
    pids = [pid for netns in names for pid in processes_in(netns)]
    assert pids
    done = subprocess.run([sys.executable, "-m", "sidecars", "cluster", "down", rooms.name, "--state-dir",
                           str(rooms.state)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert done.returncode == 0, done.stderr
    assert f"{rooms.net.driver.netns} (" in done.stdout
    assert not [n for n in names if (NETNS_DIR / n).exists()]
    assert not [pid for pid in pids if _alive(pid)]
    assert not rooms.state.exists()
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert rooms.name not in leftovers
    assert not list(Path("/etc/netns").glob(f"{rooms.name}-*"))
