"""`ccr room up` for real (root): the job demo end to end, refusals before launch, and nothing left behind.

The stand-ins and images are set up once (tests/system/conftest.py); each room is brought up with the
real sidecars (nftables, FUSE, Envoy, podman) and torn down again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecars.launcher.podman import Podman
from sidecars.localroom.netns import netns_exists
from sidecars.localroom.up import STATE_FILE, netns_name
from tests.conformance.demo_wire import read_wire_log, recording_env, wire_log_problems
from tests.system.rooms import REPO, ccr

pytestmark = [pytest.mark.root, pytest.mark.slow]


def assert_nothing_left(run_dir: Path, state: dict) -> None:
    """After `ccr room down`: no netns, no mount, no sidecar process, no container (the rules lived in the netns)."""
    assert not netns_exists(state["netns"]), "the room's network namespace is still there"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    assert not [m for m in mounts if m.startswith(str(run_dir))], "a mount of the room is still there"
    for process in state["processes"]:
        stat = Path(f"/proc/{process['pid']}/stat")
        alive = stat.exists() and int(stat.read_text().rsplit(")", 1)[1].split()[19]) == process["start_time"]
        assert not alive, f"{process['name']} (pid {process['pid']}) is still running"
    assert not Podman().container_exists(state["container"]), "the app container is still there"
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "ccr" not in nft, "firewall rules leaked into the host namespace"


def test_job_demo_end_to_end(stand_ins, tmp_path):
    """The whole cleanroomhello-job demo: its answer, decrypted from the sink, equals the expected one. It runs on
    the real governance wire only: the CGS stand-in's own record of every request it received (members' CLI,
    the room's sidecars) shows COSE governance writes, member certificates, api-version, the reference's paths,
    and no legacy CCR-Member header or path (see tests/conformance/demo_wire.py)."""
    wire_log = tmp_path.parent / f"{tmp_path.name}-cgs-wire.jsonl"
    result = subprocess.run([sys.executable, "examples/cleanroomhello-job/demo.py", "--run-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=900, env=recording_env(wire_log))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "the room's answer is the expected one" in result.stdout
    assert not netns_exists(netns_name("cleanroomhello-job", tmp_path / "room"))
    received = read_wire_log(wire_log)
    assert wire_log_problems(received) == []
    seen = {(r["method"], r["path"].split("/")[-1]) for r in received if r["status"] and r["status"] < 400}
    for expected in (("POST", "proposals:create"), ("POST", "status"), ("PUT", "events"), ("GET", "tx")):
        assert expected in seen, f"the demo never sent {expected}: {sorted(seen)}"
    assert any(r["path"].endswith(":ack") and r["status"] == 204 for r in received), "no member joined by ack"


def minimal_spec(tmp_path: Path, contract: str, **app_changes) -> Path:
    """A job without data: what the launcher decides does not depend on keys or mounts."""
    data = yaml.safe_load((REPO / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["name"] = contract
    data["contract"]["id"] = contract
    data["datasources"], data["datasinks"] = [], []
    data["application"]["command"] = ["python3", "-c", "print('hello from the room')"]
    data["application"].update(app_changes)
    spec = tmp_path / f"{contract}.yaml"
    spec.write_text(yaml.safe_dump(data))
    return spec


def bring_up(stand_ins: Path, tmp_path: Path, spec: Path, *,
             pin: bool = True) -> tuple[subprocess.CompletedProcess, Path, dict]:
    endpoints = str(stand_ins / "endpoints.json")
    if pin:
        ccr("images", "build", "cleanroomhello-job", "--pin", str(spec))
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(stand_ins / "members"))
    run_dir = tmp_path / "room"
    result = ccr("room", "up", str(spec), "--endpoints", endpoints, "--run-dir", str(run_dir), "--wait", check=False)
    state = json.loads((run_dir / STATE_FILE).read_text()) if (run_dir / STATE_FILE).exists() else None
    return result, run_dir, state


def test_minimal_room_launches_and_down_leaves_nothing(stand_ins, tmp_path):
    spec = minimal_spec(tmp_path, "refuse-control")
    result, run_dir, state = bring_up(stand_ins, tmp_path, spec)
    assert result.returncode == 0, result.stdout + result.stderr
    # The mock platform reports exactly the HOST_DATA C-ACI would for this spec (the deploy rendering), and
    # CGS, whose contract policy is that hash, let the room through: consent was confirmed.
    policy_hash = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", str(stand_ins / "endpoints.json"))
    assert state["host_data"] == policy_hash.stdout.strip()
    assert "job exited with exit code 0" in result.stdout
    assert "hello from the room" not in (run_dir / "logs" / "launcher.log").read_text(), \
        "the app's output must not be kept in clear outside the room"
    ccr("room", "down", "--run-dir", str(run_dir))
    assert_nothing_left(run_dir, state)


@pytest.mark.parametrize(("contract", "changes", "line"), [
    ("refuse-root", {"user": "0:0"},
     "application.user: the app must not run as uid 0 (the container policy's rule non_root_user; the firewall "
     "cannot confine uid 0)"),
    ("refuse-mount", {"mounts": [{"source": "/etc", "target": "/host-etc", "mode": "ro"}]},
     "application.mounts[0].source: '/etc' is not a datasource or datasink of the spec (the container policy's rule "
     "declared_mounts: the app mounts only the spec's volumes)"),
    ("refuse-unpinned", {"image": "localhost/cleanroomhello-job:latest"},
     "application.image: 'localhost/cleanroomhello-job:latest' is not pinned by digest: use REPO@sha256:<64 "
     "lower-case hex digits> (the launcher's container policy, rule image_pinned; `ccr images build NAME --pin "
     "SPEC` writes it)"),
])
def test_forbidden_app_is_refused_before_anything_starts_naming_the_rule(stand_ins, tmp_path, contract, changes,
                                                                        line):
    """What the launcher's container policy refuses, the spec refuses first (tests/unit/test_spec_rules.py):
    `ccr room up` stops loading the spec, in one line naming the field and the policy's rule, before a
    namespace, a sidecar or a container exists. (The launcher's policy still checks every launch: unit tests
    hand it these apps past validation.)"""
    spec = minimal_spec(tmp_path, contract, **changes)
    run_dir = tmp_path / "room"
    result = ccr("room", "up", str(spec), "--endpoints", str(stand_ins / "endpoints.json"), "--run-dir",
                 str(run_dir), "--wait", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == f"ccr: error: step 'load spec and endpoints' failed: {spec}: {line}"
    state = json.loads((run_dir / STATE_FILE).read_text()) if (run_dir / STATE_FILE).exists() else {}
    # Only `room up`'s own process starter ran (before the spec is read), and it is gone again.
    assert {process["name"] for process in state.get("processes", [])} <= {"forkserver"}, state
    for process in state.get("processes", []):
        stat = Path(f"/proc/{process['pid']}/stat")
        assert not (stat.exists() and int(stat.read_text().rsplit(")", 1)[1].split()[19]) == process["start_time"])
    assert not netns_exists(netns_name(contract, run_dir))
    assert "app running" not in result.stdout, "the app must never start"


def test_without_execution_consent_no_key_releasing_sidecar_starts(stand_ins, tmp_path):
    """A member disabled execution consent: the room stops once governance has asked CGS, before the volumes
    (which release keys), the proxy or the launcher exist, naming the step and the member's refusal."""
    spec = minimal_spec(tmp_path, "refuse-consent")
    endpoints = str(stand_ins / "endpoints.json")
    ccr("images", "build", "cleanroomhello-job", "--pin", str(spec))
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(stand_ins / "members"))
    ccr("governance", "consent", "disable", "refuse-consent", "--endpoints", endpoints,
        "--identity", str(stand_ins / "members" / "consumer"))
    run_dir = tmp_path / "room"
    result = ccr("room", "up", str(spec), "--endpoints", endpoints, "--run-dir", str(run_dir), "--wait", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "step 'execution consent (governance attested to CGS)' failed: execution consent is disabled" in output
    state = json.loads((run_dir / STATE_FILE).read_text())
    started = {process["name"] for process in state["processes"]}
    assert {"firewall", "skr", "governance"} <= started
    assert not started & {"volumes", "proxy", "launcher"}, started
    assert_nothing_left(run_dir, state)


def test_api_demo_end_to_end(stand_ins, tmp_path):
    """cleanroomhello-api: TLS verified against the contract CA, the API policy applied (the exported,
    decrypted app log shows the denied request never reached the app), consent revoked stops the app."""
    result = subprocess.run([sys.executable, "examples/cleanroomhello-api/demo.py", "--run-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "GET /hello  -> 200" in result.stdout and "GET /secret -> 403" in result.stdout
    assert "received GET /hello" in result.stdout and "received GET /secret" not in result.stdout
    assert "app status: stopped" in result.stdout
    assert not netns_exists(netns_name("cleanroomhello-api", tmp_path / "room"))


def test_db_access_demo_end_to_end(stand_ins, tmp_path):
    """db-access: the app reads the database configuration from a CGS secret, releases the password through
    skr, queries PostgreSQL outside the room over TLS through the egress proxy, and writes the expected
    aggregate to the encrypted sink. The password shows up in nothing the room wrote, and the demo's
    database (server, veth link, data folder) is gone afterwards."""
    result = subprocess.run([sys.executable, "examples/db-access/demo.py", "--run-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "the room's answer is the expected one" in result.stdout
    assert '"action":"release_secret"' in result.stdout  # the room read the config, audited in CGS
    password = (tmp_path / "members" / "publisher" / "db-password.txt").read_text()
    room_files = [p for p in (tmp_path / "room").rglob("*") if p.is_file()]
    assert room_files and not [p for p in room_files if password.encode() in p.read_bytes()]
    assert password not in result.stdout + result.stderr
    assert not netns_exists(netns_name("db-access", tmp_path / "room"))
    assert "ccrdb-" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert not list(Path("/tmp").glob("ccr-db-server-*/pgdata"))
    assert subprocess.run(["pgrep", "-u", "postgres", "-f", "ccr-db-server"], capture_output=True).returncode == 1
