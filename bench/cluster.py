"""A cluster of rooms (1 driver + 2 executor rooms) against the same Spark standalone cluster with nothing of
ours turned on (needs root: netns, nftables).

- cluster_overhead_ratio: the query's time on the plain cluster (no spark.authenticate, no RPC encryption,
  no shuffle encryption) ÷ on ours (all three). Same topology, same data, same query, same machine; both
  in rooms (their netns, room network and firewall), so the rooms' own cost (a veth/bridge hop and a few
  nftables rules per packet) is not in this ratio and not measured separately yet. Goal ≥ 0.7.
- the pieces: cluster_rpc_encryption_ratio (plain ÷ authentication + AES-GCM RPC, shuffle files clear),
  cluster_shuffle_encryption_ratio (that ÷ ours: what encrypting shuffle and spill files costs).
- cluster_join_s: an executor room started (netns, firewall) → attested, the accepted executor policy read
  from the CGS stand-in and the admission recorded there, secret received, worker registered with the
  driver's master.
- cluster_rows_per_s_per_executor: ours, rows of input per second per executor room. This machine has 2
  cores shared with the master, the driver and two executors: do not read a speed-up into any figure here.

Each figure is one run of the query (after one untimed warm-up run per configuration: executors start per
application, so each timed run includes its executors' start, as a real run does).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

from sidecars.attestation.mock import MockPlatform
from sidecars.attestation.verify import Trust
from sidecars.cluster.governance import CgsExecutorPolicy, host_data_of
from sidecars.cluster.localgov import LocalGovernance
from sidecars.cluster.rooms import ClusterRooms, executor_policy, mock_evidence
from sidecars.spec import Cluster

ROWS = 300_000
SQL = ("SELECT name, city, COUNT(*) AS n, SUM(CAST(amount AS INT)) AS total FROM "
       "(SELECT /*+ REPARTITION(4) */ * FROM people) GROUP BY name, city")


def _data(path: Path) -> None:
    with path.open("w") as out:
        out.write("name,city,amount\n")
        for i in range(ROWS):
            out.write(f"person{i % 997},city{i % 31},{i % 100}\n")


def _timed_query(rooms: ClusterRooms, data: Path, sink: Path, conf: dict[str, str] | None = None) -> float:
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    process = rooms.start_driver(None, SQL, {"people": str(data)}, sink, run_id, conf=conf)
    _, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"the bench query failed: {err[-2000:]}")
    return time.perf_counter() - started


def _cluster(base: Path, name: str, link: CgsExecutorPolicy | None, platform: MockPlatform,
             host_data: str) -> ClusterRooms:
    """`link` None: the plain cluster (nothing of ours, anyone may join)."""
    rooms = ClusterRooms(f"cluster-bench-{name}", 2, base / name, secure=link is not None)
    rooms.up(link, Trust.default().trusting_mock_platform(platform.directory),
             lambda room: mock_evidence(platform, host_data))
    return rooms


def run() -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    try:
        data = base / "people.csv"
        _data(data)
        spec = Cluster(executors=2, executor_image="localhost/ccr-analytics@sha256:" + "5e" * 32,
                       executor_resources={"cpu": 1, "memory_gb": 1})
        policy = executor_policy(spec, "0" * 64)
        host_data = host_data_of(policy)
        governance = LocalGovernance(base / "governance", f"cluster-bench-{uuid.uuid4().hex[:6]}",
                                     host_data_of({"role": "driver"})).start()
        try:
            governance.accept_executor_policy(policy)
            platform = MockPlatform.load(governance.mock_platform_dir)
            return _measure(base, data, governance, platform, host_data)
        finally:
            governance.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _measure(base: Path, data: Path, governance: LocalGovernance, platform: MockPlatform,
             host_data: str) -> dict[str, float]:
    sink = base / "sink"
    sink.mkdir()
    figures: dict[str, float] = {}

    plain = _cluster(base, "plain", None, platform, host_data)
    try:
        _timed_query(plain, data, sink)
        plain_s = _timed_query(plain, data, sink)
    finally:
        plain.down()

    link = governance.driver_link()
    ours = _cluster(base, "ours", link, platform, host_data)
    try:
        _timed_query(ours, data, sink)
        ours_s = _timed_query(ours, data, sink)
        rpc_only_s = _timed_query(ours, data, sink, {"spark.io.encryption.enabled": "false"})
        room = ours.add_executor_room()
        started = time.perf_counter()
        ours.join_executor(room, mock_evidence(platform, host_data))
        ours.wait_for_workers(3)
        figures["cluster_join_s"] = time.perf_counter() - started
    finally:
        ours.down()
        link.close()
    figures.update({
        "cluster_plain_query_s": plain_s,
        "cluster_query_s": ours_s,
        "cluster_overhead_ratio": plain_s / ours_s,
        "cluster_rpc_encryption_ratio": plain_s / rpc_only_s,
        "cluster_shuffle_encryption_ratio": rpc_only_s / ours_s,
        "cluster_rows_per_s_per_executor": ROWS / ours_s / 2,
    })
    return figures
