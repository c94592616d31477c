"""One shared cluster of rooms for every cluster test (never two at once on 2 cores): a driver room and two
executor rooms, admitted by attestation on the mock platform against the executor policy two members
accepted in the CGS stand-in, Spark standalone with authentication and encryption on. Tests that kill an
executor room start it again (attest, join) before they end."""

from __future__ import annotations

import csv
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecars.attestation.mock import MockPlatform
from sidecars.attestation.verify import Trust
from sidecars.cluster.governance import CgsExecutorPolicy, host_data_of
from sidecars.cluster.localgov import LocalGovernance
from sidecars.cluster.rooms import ClusterRooms, executor_policy, mock_evidence
from sidecars.localroom.netns import processes_in
from sidecars.spec import Cluster

REPO = Path(__file__).resolve().parents[3]
DRIVER_APP = Path(__file__).with_name("driver_app.py")
MARKER = "MARKER-7f3a9c1e5d"
IMAGE = "localhost/ccr-analytics@sha256:" + "5e" * 32
ALTERED_IMAGE = "localhost/ccr-analytics@sha256:" + "66" * 32
#: the driver spec the executors serve (part of the executor policy the members accept)
DRIVER_SPEC_SHA256 = "d5" * 32

pytestmark = [pytest.mark.root, pytest.mark.slow]


@dataclass
class RoomCluster:
    rooms: ClusterRooms
    platform: MockPlatform
    executor_host_data: str
    governance: LocalGovernance
    data: Path
    sink: Path

    def run(self, sql: str, *, run_id: str | None = None, pause_s: float = 0.0, parts: int = 2,
            wait: bool = True, timeout: float = 240) -> subprocess.Popen | dict:
        """The driver application in the driver room; its parsed output, or the running process."""
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        process = self.rooms.start_driver(DRIVER_APP, sql, {"people": str(self.data)}, self.sink, run_id,
                                          parts=parts, extra={"pause_s": pause_s})
        if not wait:
            return process
        _, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err[-3000:]
        return {"run_id": run_id, "rows": self.published(run_id)}

    def published(self, run_id: str) -> list[tuple[str, int, int]]:
        """The rows of a published run (name, n, total), sorted; the run must be published whole."""
        folder = self.sink / run_id
        assert (folder / "_SUCCESS").exists()
        rows = [r for part in sorted(folder.glob("part-*.csv")) for r in csv.DictReader(part.open())]
        return sorted((r["name"], int(r["n"]), int(r["total"])) for r in rows)


def write_people(path: Path) -> None:
    """Tiny data with a known marker value in a grouped column (it crosses rooms in the shuffle)."""
    rows = ["name,city,amount"]
    for i in range(400):
        name = MARKER if i % 7 == 0 else f"person{i % 13}"
        rows.append(f"{name},city{i % 5},{i % 50}")
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="session")
def room_cluster(tmp_path_factory) -> Iterator[RoomCluster]:
    base = tmp_path_factory.mktemp("cluster")
    spec = Cluster(executors=2, executor_image=IMAGE, executor_resources={"cpu": 1, "memory_gb": 1})
    policy = executor_policy(spec, DRIVER_SPEC_SHA256)
    host_data = host_data_of(policy)
    tag = uuid.uuid4().hex[:6]
    governance = LocalGovernance(base / "governance", f"clus-{tag}",
                                 host_data_of({"role": "driver", "spec_sha256": DRIVER_SPEC_SHA256})).start()
    link: CgsExecutorPolicy | None = None
    rooms = ClusterRooms(f"clus-{tag}", 2, base / "state")
    try:
        governance.accept_executor_policy(policy)
        platform = MockPlatform.load(governance.mock_platform_dir)
        link = governance.driver_link()
        data = base / "data" / "people.csv"
        data.parent.mkdir()
        write_people(data)
        sink = base / "sink"
        sink.mkdir()
        rooms.up(link, Trust.default().trusting_mock_platform(governance.mock_platform_dir),
                 lambda room: mock_evidence(platform, host_data))
        yield RoomCluster(rooms, platform, host_data, governance, data, sink)
    finally:
        rooms.down()
        if link is not None:
            link.close()
        governance.stop()


def processes_with(netns: str, needle: str) -> list[int]:
    """Pids in the room whose command line contains `needle`."""
    found = []
    for pid in processes_in(netns):
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(pid)
        except OSError:
            continue
    return found
