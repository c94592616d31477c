"""`ccr room up SPEC` of a spec with a `cluster` section brings up the driver room and its executor rooms (each
admitted against the executor policy the members accepted in the CGS stand-in), and `ccr room down` leaves
nothing of any room; an `up` that fails half way leaves nothing either. Through the CLI, as a user runs it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sidecars.cluster.localgov import LocalGovernance
from sidecars.cluster.roomup import running_cluster
from sidecars.emulators import runner
from sidecars.localroom.netns import NETNS_DIR
from sidecars.spec import endpoint_variables, load_spec
from tests.system.cluster.conftest import DRIVER_APP, IMAGE, REPO, write_people
from tests.system.cluster.test_cluster import SQL, expected

pytestmark = [pytest.mark.root, pytest.mark.slow]

#: the example spec's values the cluster does not use (no key vault, no storage here)
UNUSED = {"keyvault_url": "https://127.0.0.1:9/kv", "storage_url": "https://127.0.0.1:9/blob"}
UNUSED_OPTIONS = [option for key, value in UNUSED.items() for option in ("--var", f"{key}={value}")]


@dataclass
class ClusterSpec:
    path: Path
    name: str
    endpoints: Path
    governance: LocalGovernance


def ccr(*argv: str | Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def cluster_spec(tmp_path_factory) -> Iterator[ClusterSpec]:
    """The analytics example's spec as the driver of 2 executor rooms, and its governance: the members
    accepted the contract, the driver room's policy (HOST_DATA of this spec) and the executor policy."""
    base = tmp_path_factory.mktemp("cluster-up")
    tag = uuid.uuid4().hex[:4]
    name = f"clu2-{tag}"
    document = yaml.safe_load((REPO / "examples" / "analytics" / "spec.yaml").read_text())
    document["name"] = name
    document["contract"]["id"] = f"{name}-analytics"
    document["cluster"] = {"executors": 2, "executor_image": IMAGE, "executor_resources": {"cpu": 1, "memory_gb": 1}}
    path = base / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    # the policy files the spec names, next to it as in the example's folder
    for policy in (REPO / "examples" / "analytics").glob("*.rego"):
        (base / policy.name).write_text(policy.read_text())
    # the driver room's policy is accepted once the spec is known (it names the stand-ins' endpoints)
    governance = LocalGovernance(base / "governance", name, "").start()
    try:
        endpoints = governance.run_dir.resolve() / runner.ENDPOINTS_FILE
        governance.accept_cluster_spec(load_spec(path, variables={**endpoint_variables(endpoints), **UNUSED}))
        yield ClusterSpec(path, name, endpoints, governance)
    finally:
        governance.stop()


def leftovers(name: str, run_dir: Path) -> list[str]:
    """Whatever of cluster `name` (run from `run_dir`) is still on this machine."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if name in line]
    found += [f"netns file {p}" for p in NETNS_DIR.glob(f"{name}-*")]
    found += [f"/etc/netns/{p.name}" for p in Path("/etc/netns").glob(f"{name}-*")]
    needles = (name.encode(), str(run_dir).encode())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            cwd = os.readlink(proc / "cwd").encode()
        except OSError:  # gone meanwhile
            continue
        if any(needle in cmdline or needle in cwd for needle in needles):
            found.append(f"process {proc.name}: {cmdline.replace(bytes(1), b' ')[:200]!r}")
    found += [f"mount {line}" for line in Path("/proc/mounts").read_text().splitlines()
              if name in line or str(run_dir) in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    found += [f"nft {line}" for line in tables.splitlines() if name in line]
    found += [f"state {p}" for p in (run_dir / "rooms", run_dir / "cluster.json") if p.exists()]
    return found


def test_ccr_room_up_of_a_cluster_spec_answers_and_ccr_room_down_leaves_nothing(cluster_spec, tmp_path):
    run_dir = tmp_path / "run"
    up = ccr("room", "up", cluster_spec.path, "--endpoints", cluster_spec.endpoints, "--run-dir", run_dir,
             *UNUSED_OPTIONS)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    for line in ("room network: 3 rooms", f"executor room {cluster_spec.name}-exec-2: admitted",
                 "2 executor rooms registered", f"cluster {cluster_spec.name} is up"):
        assert line in up.stdout, up.stdout
    for room in ("driver", "exec-1", "exec-2", "net"):
        assert (NETNS_DIR / f"{cluster_spec.name}-{room}").exists(), room
    # every admission is in the contract's audit log in CGS
    admitted = [e["data"] for e in cluster_spec.governance.events()
                if e["scope"] == "cluster" and e["data"].get("event") == "cluster.executor.admitted"]
    assert len(admitted) == 2

    # the query: a driver application in the driver room, with the room's secret from its 0600 properties
    rooms = running_cluster(run_dir)
    assert rooms.secret is not None and [r.netns for r in rooms.net.executors] == [
        f"{cluster_spec.name}-exec-1", f"{cluster_spec.name}-exec-2"]
    data, sink = tmp_path / "people.csv", tmp_path / "sink"
    write_people(data)
    sink.mkdir()
    driver = rooms.start_driver(DRIVER_APP, SQL, {"people": str(data)}, sink, "run-up", extra={"pause_s": 0})
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err[-3000:]
    # the published parts are the answer, as the room writes it
    assert (sink / "run-up" / "_SUCCESS").exists()
    rows = [r for part in sorted((sink / "run-up").glob("part-*.csv")) for r in csv.DictReader(part.open())]
    assert sorted((r["name"], int(r["n"]), int(r["total"])) for r in rows) == expected(data)

    down = ccr("room", "down", "--run-dir", run_dir, timeout=300)
    assert down.returncode == 0, down.stderr
    assert f"cluster {cluster_spec.name} is down" in down.stdout
    assert leftovers(cluster_spec.name, run_dir) == []


def test_an_up_that_fails_at_the_second_executor_leaves_nothing(cluster_spec, tmp_path):
    """The second executor room cannot start its worker (its scratch folder's path is taken by a file):
    `ccr up` ends with one line naming that room, after taking down the rooms that did come up."""
    run_dir = tmp_path / "run"
    blocked = run_dir / "rooms" / f"{cluster_spec.name}-exec-2" / "scratch"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder")
    up = ccr("up", cluster_spec.path, "--endpoints", cluster_spec.endpoints, "--run-dir", run_dir,
             *UNUSED_OPTIONS)
    assert up.returncode == 1, up.stdout[-3000:]
    # the first executor did join before the failure: the teardown had a running room to remove
    assert f"executor room {cluster_spec.name}-exec-1: admitted" in up.stdout, up.stdout
    errors = [line for line in up.stderr.splitlines() if line.startswith("ccr: error:")]
    assert len(errors) == 1 and f"executor room {cluster_spec.name}-exec-2 did not join" in errors[0], up.stderr
    assert "Traceback" not in up.stderr
    assert leftovers(cluster_spec.name, run_dir) == []
