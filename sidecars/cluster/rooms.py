"""A cluster of rooms: a driver room and N executor rooms of one Spark standalone cluster on this machine.

In order: the room network (network.py: bridge netns, one netns per room, each room's firewall); the
driver room's admission service (admission.py) and Spark master; then each executor room attests, receives
the shared secret wrapped to its own key, writes it to its 0600 properties file and starts its Spark worker
(1 core, 512 MiB) that registers with the master. `down` stops every process in every room's netns,
deletes the netns and the cluster's state folder: nothing of any room is left.

HOST_DATA of the executor policy: sha256 of the canonical JSON of what an executor room runs (its image
pinned by digest, its resources, its role, and the driver spec it serves); the members accept that policy
in governance (governance.py) and the admission reads it from there. Here the executor rooms' SNP
reports come from the mock platform (attestation.mock); on C-ACI they come from each executor group's PSP.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyspark

from ..attestation.evidence import Evidence
from ..attestation.mock import MockPlatform
from ..attestation.providers import MockSnpProvider
from ..attestation.verify import Trust
from ..common.errors import CcrError, ProcessError
from ..localroom.netns import delete_room_network, entered, stop_processes_in
from ..spec import Cluster
from .admission import Admission, ExecutorGovernance, join, serve
from .governance import host_data_of  # noqa: F401 - its home was here; callers (renderings) may import it from here
from .job import settle
from .network import (
    ClusterNetwork,
    ClusterRoom,
    add_room,
    apply_firewall,
    create_bridge,
    delete_cluster_network,
    delete_name_files,
)
from .ports import ADMISSION_PORT, MASTER_PORT, MASTER_UI_PORT, WORKER_PORT, WORKER_UI_PORT
from .sparkconf import daemon_settings, driver_conf, write_properties

REGISTER_TIMEOUT_S = 120.0


def spark_home() -> Path:
    """pyspark's wheel carries Spark itself (jars, bin/spark-class): the standalone daemons run from it."""
    return Path(pyspark.__file__).parent


def executor_policy(cluster: Cluster, driver_spec_sha256: str) -> dict[str, object]:
    """What an executor room's CCE policy measures, as the members accept it with the query."""
    return {"role": "executor", "image": cluster.executor_image,
            "resources": cluster.executor_resources.model_dump(), "memory_mb": cluster.executor_memory_mb,
            "driver_spec_sha256": driver_spec_sha256}


@dataclass
class ClusterRooms:
    """One cluster's rooms, state folder and processes (the driver's admission service runs in this
    process, its socket in the driver room's netns)."""

    name: str
    executors: int
    state: Path
    secure: bool = True

    def __post_init__(self) -> None:
        self.net = ClusterNetwork.plan(self.name, self.executors)
        self.secret = secrets.token_bytes(32) if self.secure else None
        self.processes: dict[str, subprocess.Popen] = {}
        self.admission: Admission | None = None
        self._server = None
        self.join_seconds: dict[str, float] = {}

    # --- paths and URLs ---------------------------------------------------------------------------------

    @property
    def master_url(self) -> str:
        return f"spark://{self.net.driver.address}:{MASTER_PORT}"

    @property
    def admission_url(self) -> str:
        return f"http://{self.net.driver.address}:{ADMISSION_PORT}/admit"

    def room_dir(self, room: ClusterRoom) -> Path:
        return self.state / room.netns

    @property
    def audit_path(self) -> Path:
        return self.room_dir(self.net.driver) / "admission-audit.jsonl"

    # --- up -----------------------------------------------------------------------------------------------

    def up(self, governance: ExecutorGovernance | None, trust: Trust | None,
           evidence_for: Callable[[ClusterRoom], Callable[[bytes], Evidence]] | None,
           progress: Callable[[str], None] = lambda _line: None) -> None:
        """Network, driver (admission + master), then each executor room joins. On any failure, down().
        `governance` says which executor policy the members accepted (read at each admission) and records
        each decision; `None` only with secure=False (the bench's plain cluster admits anyone). `progress`
        receives one line as each long step ends."""
        try:
            self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
            create_bridge(self.net)
            for room in self.net.rooms:
                add_room(self.net, room, self.net.rooms)
                self.room_dir(room).mkdir(mode=0o700, exist_ok=True)
            progress(f"room network: {len(self.net.rooms)} rooms on {self.net.netns}")
            if self.secure:
                assert governance is not None and trust is not None and self.secret is not None
                self.admission = Admission(governance, self.secret, trust, self.audit_path)
                with entered(self.net.driver.netns):
                    self._server = serve(self.admission, self.net.driver.address, ADMISSION_PORT)
            self._start_master()
            progress(f"driver room {self.net.driver.netns}: admission and Spark master started")
            for room in self.net.executors:
                assert evidence_for is not None or not self.secure
                try:
                    self.join_executor(room, evidence_for(room) if evidence_for else None)
                except (CcrError, OSError) as exc:  # which room, on the one line the user reads
                    raise CcrError(f"executor room {room.netns} did not join: {exc}") from exc
                progress(f"executor room {room.netns}: admitted, worker started "
                         f"({self.join_seconds[room.netns]:.1f} s)")
            waited = self.wait_for_workers(len(self.net.executors))
            progress(f"{len(self.net.executors)} executor rooms registered with the master ({waited:.1f} s)")
        except BaseException:
            self.down()
            raise

    def _spark(self, room: ClusterRoom, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.room_dir(room) / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_DAEMON_MEMORY": "256m",
               "SPARK_LOG_DIR": str(self.room_dir(room)), "SPARK_NO_DAEMONIZE": "1",
               "PYSPARK_PYTHON": sys.executable,
               # Spark uses the address as it is instead of looking a name up for it
               "SPARK_LOCAL_HOSTNAME": room.address, "SPARK_LOCAL_IP": room.address}
        process = subprocess.Popen(["ip", "netns", "exec", room.netns,
                                    str(spark_home() / "bin" / "spark-class"), *argv],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.processes[f"{room.netns}/{name}"] = process
        return process

    def _start_master(self) -> None:
        driver = self.net.driver
        props = write_properties(self.room_dir(driver) / "master.properties", daemon_settings(self.secure),
                                 self.secret)
        self._spark(driver, "master", ["org.apache.spark.deploy.master.Master", "--host", driver.address,
                                       "--port", str(MASTER_PORT), "--webui-port", str(MASTER_UI_PORT),
                                       "--properties-file", str(props)])

    def join_executor(self, room: ClusterRoom, get_evidence: Callable[[bytes], Evidence] | None) -> None:
        """Attest, receive the secret (refused: PolicyDenied, nothing started), start the worker."""
        started = time.perf_counter()
        secret = None
        if self.secure:
            assert get_evidence is not None
            with entered(room.netns):
                secret = join(self.admission_url, get_evidence)
        self.start_worker(room, secret)
        self.join_seconds[room.netns] = time.perf_counter() - started

    def start_worker(self, room: ClusterRoom, secret: bytes | None) -> None:
        directory = self.room_dir(room)
        scratch = directory / "scratch"
        scratch.mkdir(mode=0o700, exist_ok=True)
        props = write_properties(directory / "worker.properties",
                                 daemon_settings(self.secure, local_dir=scratch), secret)
        self._spark(room, "worker", ["org.apache.spark.deploy.worker.Worker", self.master_url,
                                     "--host", room.address, "--port", str(WORKER_PORT),
                                     "--webui-port", str(WORKER_UI_PORT), "--cores", "1", "--memory", "512m",
                                     "--work-dir", str(directory / "work"), "--properties-file", str(props)])

    def master_state(self) -> dict:
        """The master's JSON state, read from inside the driver room (the UI port is closed outside it)."""
        with entered(self.net.driver.netns):
            return httpx.get(f"http://{self.net.driver.address}:{MASTER_UI_PORT}/json/", timeout=5).json()

    def alive_workers(self) -> list[str]:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            return sorted(w["host"] for w in self.master_state().get("workers", []) if w.get("state") == "ALIVE")
        return []

    def wait_for_workers(self, count: int, timeout: float = REGISTER_TIMEOUT_S) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if len(self.alive_workers()) >= count:
                return time.monotonic() - started
            for key, process in self.processes.items():
                if process.poll() is not None and key.endswith("/master"):
                    raise ProcessError(f"the Spark master ended (exit {process.returncode}); see its log")
            time.sleep(0.5)
        raise ProcessError(f"{count} executor rooms did not register with the driver within {timeout:.0f} s")

    def add_executor_room(self) -> ClusterRoom:
        """One more executor room on the room network (not yet admitted: `join_executor` next); every room's
        firewall is replaced (atomically) to let the new member's Spark traffic through."""
        room = ClusterRoom(f"{self.name}-exec-{len(self.net.rooms)}", "executor", len(self.net.rooms))
        members = (*self.net.rooms, room)
        add_room(self.net, room, members)
        self.net = ClusterNetwork(self.name, members)
        for other in self.net.rooms[:-1]:
            apply_firewall(other, members)
        self.room_dir(room).mkdir(mode=0o700, exist_ok=True)
        return room

    def remove_room(self, room: ClusterRoom) -> None:
        """Stop the room's processes and delete its netns; the others' firewalls forget it."""
        stop_processes_in(room.netns, timeout=3.0)
        delete_room_network(room.netns)
        delete_name_files(room.netns)
        members = tuple(r for r in self.net.rooms if r.netns != room.netns)
        self.net = ClusterNetwork(self.name, members)
        for other in members:
            apply_firewall(other, members)

    def start_driver(self, script: Path | None, sql: str, views: dict[str, str], sink: Path, run_id: str, *,
                     parts: int = 2, extra: dict[str, object] | None = None,
                     conf: dict[str, str] | None = None) -> subprocess.Popen:
        """The driver application in the driver room (`python -m sidecars.cluster.job`, or `script`, one like
        it): the secret reaches it in a 0600 properties file, never on its command line."""
        driver_dir = self.room_dir(self.net.driver)
        scratch = driver_dir / "scratch"
        scratch.mkdir(mode=0o700, exist_ok=True)
        settings = driver_conf(self.net.driver.address, scratch, secure=self.secure)
        settings["spark.pyspark.python"] = sys.executable
        settings.update(conf or {})
        properties = ""
        if self.secret is not None:
            properties = str(write_properties(driver_dir / "driver.properties", {}, self.secret))
        args = driver_dir / f"{run_id}.json"
        args.write_text(json.dumps({"master": self.master_url, "conf": settings, "properties": properties,
                                    "views": views, "sql": sql, "sink": str(sink), "run_id": run_id,
                                    "parts": parts, **(extra or {})}))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
               "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_HOSTNAME": self.net.driver.address,
               "SPARK_LOCAL_IP": self.net.driver.address}
        program = [str(script)] if script else ["-m", "sidecars.cluster.job"]
        return subprocess.Popen(["ip", "netns", "exec", self.net.driver.netns, sys.executable, *program,
                                 str(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=driver_dir, start_new_session=True)

    def settle_run(self, run_id: str, sink: Path, process: subprocess.Popen) -> str:
        """`succeeded` or `failed` (job.settle) once the driver application ended; the outcome is in the
        driver room's audit trail (and the governance's), with the driver's exit code."""
        status = settle(sink, run_id, process.returncode)
        if self.admission is not None:
            self.admission.audit({"event": f"cluster.run.{status}", "run_id": run_id,
                                  "exit_code": process.returncode})
        return status

    # --- faults and down -----------------------------------------------------------------------------------

    def kill_room(self, room: ClusterRoom) -> list[int]:
        """Every process in the room, at once (a container group that dies); the driver room's admission
        service (a thread of this process, its socket in the room) dies with it."""
        if room.netns == self.net.driver.netns:
            self._stop_admission()
        return stop_processes_in(room.netns, timeout=0.0)

    def restart_driver_room(self) -> None:
        """The driver room's admission service and Spark master again, after the room was killed; the
        executors' workers register with the new master by themselves."""
        if self.admission is not None:
            with entered(self.net.driver.netns):
                self._server = serve(self.admission, self.net.driver.address, ADMISSION_PORT)
        self._start_master()

    def _stop_admission(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def down(self) -> list[str]:
        self._stop_admission()
        for netns in [room.netns for room in self.net.rooms] + [self.net.netns]:
            stop_processes_in(netns, timeout=3.0)
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        deleted = delete_cluster_network(self.net)
        shutil.rmtree(self.state, ignore_errors=True)
        return deleted


def mock_evidence(platform: MockPlatform, host_data: str) -> Callable[[bytes], Evidence]:
    """A room's report source on the mock platform: SNP reports with this HOST_DATA."""
    provider = MockSnpProvider(platform, host_data=bytes.fromhex(host_data))
    return provider.get_evidence
