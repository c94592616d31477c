"""The analytics demo's approved query (spend by city, threshold 10) on a cluster of rooms: 1 driver room and 2
executor rooms on this machine, admitted by attestation (the mock platform stands in for each room's PSP)
against the executor policy two members accepted in governance (the CGS stand-in).

1. the demo's data (examples/analytics/data.py) and its answer computed in sqlite over the clear rows: what
   the single analytics room writes (tests/system/analytics checks the room against the same answer);
2. alice and bob accept the contract, the driver room's policy and the executor policy (a member document)
   in the CGS stand-in; `ccr room up` of the analytics spec with a cluster section brings up the cluster:
   room network, firewall, admission (which reads the accepted executor policy from CGS), Spark master,
   each executor room attests and joins; tcpdump listens on every port of the room network while the
   query runs in the driver room;
3. the answer is compared with the single room's; the capture is searched for the demo's most common city
   and the customers' e-mail domain (both cross rooms in the shuffle in clear without encryption);
4. an executor room whose image was altered (another HOST_DATA) asks to join: refused, audited in the
   contract's audit log in CGS with the claim that did not match;
5. `ccr room down`: nothing of any room is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples" / "analytics"))

from data import comparable, generate, write  # noqa: E402

from sidecars.attestation.mock import MockPlatform  # noqa: E402
from sidecars.cluster.governance import host_data_of, spec_sha256  # noqa: E402
from sidecars.cluster.localgov import LocalGovernance  # noqa: E402
from sidecars.cluster.rooms import executor_policy, mock_evidence  # noqa: E402
from sidecars.cluster.roomup import running_cluster  # noqa: E402
from sidecars.common.errors import PolicyDenied  # noqa: E402
from sidecars.emulators.runner import ENDPOINTS_FILE  # noqa: E402
from sidecars.localroom.netns import NETNS_DIR  # noqa: E402
from sidecars.spec import Cluster, endpoint_variables, load_spec  # noqa: E402

THRESHOLD = 10
SQL = ("SELECT n.city, COUNT(*) AS purchases, SUM(n.amount) AS spend FROM northwind n JOIN woodgrove w "
       "ON n.customer_id = w.customer_id GROUP BY n.city")
IMAGE = "localhost/ccr-analytics@sha256:" + "5e" * 32
ALTERED_IMAGE = "localhost/ccr-analytics@sha256:" + "66" * 32
#: the example spec's values the cluster does not use (no key vault, no storage account here)
UNUSED = {"keyvault_url": "https://127.0.0.1:9/kv", "storage_url": "https://127.0.0.1:9/blob"}


def cluster_spec(folder: Path, name: str, contract_id: str) -> Path:
    """The analytics example's spec as the driver of 2 executor rooms, under this demo's contract."""
    example = REPO / "examples" / "analytics"
    document = yaml.safe_load((example / "spec.yaml").read_text())
    document.update(name=name, cluster={"executors": 2, "executor_image": IMAGE,
                                        "executor_resources": {"cpu": 1, "memory_gb": 1}})
    document["contract"]["id"] = contract_id
    (folder / "spec.yaml").write_text(yaml.safe_dump(document))
    shutil.copy(example / "allow-analytics.rego", folder)
    return folder / "spec.yaml"


def ccr(*argv: str | Path) -> int:
    """`ccr ...` as a user runs it (its output goes straight to ours)."""
    return subprocess.run([sys.executable, "-m", "sidecars", *map(str, argv)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}).returncode


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="cluster-demo-"))
    data = generate()
    write(data, base / "data")
    expected = comparable(data.answer(SQL, THRESHOLD))
    name = f"cluster-demo-{uuid.uuid4().hex[:6]}"
    run_dir = base / "run"
    governance = LocalGovernance(base / "governance", name, "").start()
    ok = False
    try:
        endpoints = governance.run_dir.resolve() / ENDPOINTS_FILE
        spec_path = cluster_spec(base, name, governance.contract_id)
        spec = load_spec(spec_path, variables={**endpoint_variables(endpoints), **UNUSED})
        governance.accept_cluster_spec(spec)
        print(f"governance: alice and bob accepted contract {governance.contract_id}, the driver's policy and "
              f"executor policy {governance.document_id} (image {IMAGE[-12:]})")
        started = time.perf_counter()
        if ccr("room", "up", spec_path, "--endpoints", endpoints, "--run-dir", run_dir,
               *(f"--var={key}={value}" for key, value in UNUSED.items())) != 0:
            return 1
        print(f"cluster up in {time.perf_counter() - started:.1f} s")
        rooms = running_cluster(run_dir)
        platform = MockPlatform.load(governance.mock_platform_dir)
        sink = base / "sink"
        sink.mkdir()
        pcap = base / "room-network.pcap"
        tcpdump = subprocess.Popen(["ip", "netns", "exec", rooms.net.netns, "tcpdump", "-i", "any", "-s", "0",
                                    "-B", "65536", "-U", "-w", str(pcap)], stderr=subprocess.PIPE)
        time.sleep(2)
        views = {"northwind": str(base / "data" / "northwind"),
                 "woodgrove": {"path": str(base / "data" / "woodgrove"), "format": "parquet"}}
        guarded = f"{SQL} HAVING COUNT(*) >= {THRESHOLD}"
        process = rooms.start_driver(None, guarded, views, sink, "spend-by-city", parts=2)
        _, err = process.communicate(timeout=600)
        time.sleep(1.5)
        tcpdump.send_signal(signal.SIGINT)
        _, dump_err = tcpdump.communicate(timeout=10)
        if process.returncode != 0:
            print(f"the query failed: {err[-2000:]}", file=sys.stderr)
            return 1
        rows = []
        for part in sorted((sink / "spend-by-city").glob("part-*.csv")):
            rows += [tuple(line.split(",")) for line in part.read_text().splitlines()[1:]]
        answer = comparable(rows)
        print(f"answer ({len(answer)} cities) {'equals' if answer == expected else 'DIFFERS FROM'} "
              "the single room's")
        captured = pcap.read_bytes()
        leaks = [m for m in (b"Seattle", b"@example.com") if m in captured]
        print(f"capture: {len(captured)} bytes on the room network ({dump_err.decode().strip().splitlines()[-1]}); "
              f"clear values found: {leaks or 'none'}")
        altered = Cluster(executors=2, executor_image=ALTERED_IMAGE, executor_resources={"cpu": 1, "memory_gb": 1})
        intruder = rooms.add_executor_room()
        try:
            rooms.join_executor(intruder, mock_evidence(platform, host_data_of(executor_policy(
                altered, spec_sha256(spec)))))
            print("the altered executor was ADMITTED")
            refused = False
        except PolicyDenied as exc:
            print(f"altered executor image refused: {exc}")
            refused = True
        audit = [e["data"] for e in governance.events() if e["scope"] == "cluster"][-1]
        print(f"audit event in CGS: {json.dumps(audit)}")
        ok = answer == expected and not leaks and refused and audit.get("claim") == "x-ms-sevsnpvm-hostdata"
    finally:
        if (run_dir / "cluster.json").exists():
            ccr("room", "down", "--run-dir", run_dir)
        governance.stop()
        shutil.rmtree(base, ignore_errors=True)
    left = [path.name for path in NETNS_DIR.glob(f"{name}-*")]
    print(f"down: {'nothing left' if not left else f'LEFT {left}'}")
    return 0 if ok and not left else 1


if __name__ == "__main__":
    sys.exit(main())
