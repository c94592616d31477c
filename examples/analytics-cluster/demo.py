"""The analytics demo's approved query (spend by city, threshold 10) on a cluster of rooms: 1 driver room and 2
executor rooms on this machine, admitted by attestation (the mock platform stands in for each room's PSP)
against the executor policy two members accepted in governance (the CGS stand-in).

1. the demo's data (examples/analytics/data.py) and its answer computed in sqlite over the clear rows: what
   the single analytics room writes (tests/system/analytics checks the room against the same answer);
2. alice and bob accept the contract, the driver room's policy and the executor policy (a member document)
   in the CGS stand-in; the cluster comes up: room network, firewall, admission (which reads the accepted
   executor policy from CGS), Spark master, each executor room attests and joins; tcpdump listens on every
   port of the room network while the query runs;
3. the answer is compared with the single room's; the capture is searched for the demo's most common city
   and the customers' e-mail domain (both cross rooms in the shuffle in clear without encryption);
4. an executor room whose image was altered (another HOST_DATA) asks to join: refused, audited in the
   contract's audit log in CGS with the claim that did not match;
5. down: nothing of any room is left.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples" / "analytics"))

from data import comparable, generate, write  # noqa: E402

from sidecars.attestation.mock import MockPlatform  # noqa: E402
from sidecars.attestation.verify import Trust  # noqa: E402
from sidecars.cluster.governance import host_data_of  # noqa: E402
from sidecars.cluster.localgov import LocalGovernance  # noqa: E402
from sidecars.cluster.rooms import ClusterRooms, executor_policy, mock_evidence  # noqa: E402
from sidecars.common.errors import PolicyDenied  # noqa: E402
from sidecars.localroom.netns import NETNS_DIR  # noqa: E402
from sidecars.spec import Cluster  # noqa: E402

THRESHOLD = 10
SQL = ("SELECT n.city, COUNT(*) AS purchases, SUM(n.amount) AS spend FROM northwind n JOIN woodgrove w "
       "ON n.customer_id = w.customer_id GROUP BY n.city")
IMAGE = "localhost/ccr-analytics@sha256:" + "5e" * 32
ALTERED_IMAGE = "localhost/ccr-analytics@sha256:" + "66" * 32


def policy(image: str) -> dict[str, object]:
    return executor_policy(Cluster(executors=2, executor_image=image, executor_resources={"cpu": 1, "memory_gb": 1}),
                           "0" * 64)


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="cluster-demo-"))
    data = generate()
    write(data, base / "data")
    expected = comparable(data.answer(SQL, THRESHOLD))
    tag = uuid.uuid4().hex[:6]
    governance = LocalGovernance(base / "governance", f"cluster-demo-{tag}", host_data_of({"role": "driver"})).start()
    rooms = ClusterRooms(f"cluster-demo-{tag}", 2, base / "state")
    link = None
    ok = False
    try:
        governance.accept_executor_policy(policy(IMAGE))
        print(f"governance: alice and bob accepted contract {governance.contract_id} and executor policy "
              f"{governance.document_id} (image {IMAGE[-12:]})")
        platform = MockPlatform.load(governance.mock_platform_dir)
        accepted = host_data_of(policy(IMAGE))
        link = governance.driver_link()
        sink = base / "sink"
        sink.mkdir()
        started = time.perf_counter()
        rooms.up(link, Trust.default().trusting_mock_platform(platform.directory),
                 lambda room: mock_evidence(platform, accepted))
        print(f"cluster up: 1 driver + 2 executor rooms in {time.perf_counter() - started:.1f} s "
              f"(executors joined in {', '.join(f'{s:.1f} s' for s in rooms.join_seconds.values())})")
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
        intruder = rooms.add_executor_room()
        try:
            rooms.join_executor(intruder, mock_evidence(platform, host_data_of(policy(ALTERED_IMAGE))))
            print("the altered executor was ADMITTED")
            refused = False
        except PolicyDenied as exc:
            print(f"altered executor image refused: {exc}")
            refused = True
        audit = [e["data"] for e in governance.events() if e["scope"] == "cluster"][-1]
        print(f"audit event in CGS: {json.dumps(audit)}")
        ok = answer == expected and not leaks and refused and audit.get("claim") == "x-ms-sevsnpvm-hostdata"
    finally:
        names = [room.netns for room in rooms.net.rooms] + [rooms.net.netns]
        rooms.down()
        if link is not None:
            link.close()
        governance.stop()
        shutil.rmtree(base, ignore_errors=True)
    left = [name for name in names if (NETNS_DIR / name).exists()]
    print(f"down: {'nothing left' if not left else f'LEFT {left}'}")
    return 0 if ok and not left else 1


if __name__ == "__main__":
    sys.exit(main())
