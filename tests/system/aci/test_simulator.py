"""`ccr aci run` for real (root, podman): the CCE policy is enforced before anything starts, and
`ccr aci delete` leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecars.aci.group import netns_name, remaining
from sidecars.aci.state import GroupState
from sidecars.common.process import is_running
from sidecars.launcher.podman import Podman
from sidecars.localroom.netns import netns_exists, processes_in
from tests.system.rooms import ccr

from .conftest import edit_container, minimal_spec, render_arm

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_an_altered_environment_variable_is_refused_before_any_key_is_released(stand_ins, tmp_path,
                                                                                aci_state_dirs):
    """One environment variable of skr changed in the template (its policy left as rendered): the
    simulator's guest-agent check refuses the group naming skr, and nothing ran: no pod, no netns, no state,
    no key_release on the contract's audit log."""
    spec = minimal_spec(tmp_path, "aci-altered-env")
    endpoints = str(stand_ins / "endpoints.json")
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(stand_ins / "members"))
    template = render_arm(stand_ins, spec, tmp_path / "arm")
    edited = edit_container(template, "ccr-skr", lambda p: p["environmentVariables"].append(
        {"name": "CCR_LOG_LEVEL", "value": "debug"}))
    state_dir = tmp_path / "group"
    aci_state_dirs.append(state_dir)
    result = ccr("aci", "run", str(edited), "--endpoints", endpoints, "--state-dir", str(state_dir),
                 "--unsafe-ungoverned", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("ccr: error: the CCE policy refuses container ccr-skr: create_container denied"), error
    assert "policy allows ccr-firewall" in result.stdout  # checked in creation order, up to the altered one
    assert not (state_dir / "state.json").exists()
    assert not netns_exists(netns_name("aci-altered-env"))
    assert not Podman().run_cli(["ps", "-a", "--filter", "label=ccr-aci=aci-altered-env", "--format", "{{.Names}}"])
    events = ccr("governance", "events", "list", "aci-altered-env", "--endpoints", endpoints,
                 "--identity", str(stand_ins / "members" / "consumer"), "--json").stdout
    assert "key_release" not in events, events


def test_a_template_not_accepted_in_cgs_is_refused(stand_ins, tmp_path, aci_state_dirs):
    """The members accepted one template; an operator's edit of it (one image tag) and a run naming no
    contract are both refused before anything starts, and --unsafe-ungoverned says loudly what it skips."""
    spec = minimal_spec(tmp_path, "aci-ungoverned")
    endpoints = str(stand_ins / "endpoints.json")
    template = render_arm(stand_ins, spec, tmp_path / "arm")
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(stand_ins / "members"),
        "--deployment", str(template))
    edited = edit_container(template, "ccr-telemetry", lambda p: p.update(image=p["image"] + "-debug"))
    state_dir = tmp_path / "group"
    aci_state_dirs.append(state_dir)
    refused = ccr("aci", "run", str(edited), "--endpoints", endpoints, "--contract", "aci-ungoverned",
                  "--state-dir", str(state_dir), check=False)
    assert refused.returncode == 1
    error = refused.stderr.strip().splitlines()[-1]
    assert "is not the deployment the members of 'aci-ungoverned' accepted" in error, error
    assert "ccr-telemetry" not in refused.stdout and not (state_dir / "state.json").exists()
    unnamed = ccr("aci", "run", str(template), "--state-dir", str(state_dir), check=False)
    assert unnamed.returncode == 1 and "pass --contract ID" in unnamed.stderr
    assert not netns_exists(netns_name("aci-ungoverned"))


def test_run_status_logs_and_delete_leaves_nothing(stand_ins, tmp_path, aci_state_dirs):
    """The accepted template runs with exactly its containers on the "simulated" platform; delete removes
    the pod, the containers, the netns (and every process in it), the mounts, the simulator process and its
    socket, and the state directory."""
    spec = minimal_spec(tmp_path, "aci-lifecycle")
    endpoints = str(stand_ins / "endpoints.json")
    template = render_arm(stand_ins, spec, tmp_path / "arm")
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(stand_ins / "members"),
        "--deployment", str(template))
    state_dir = tmp_path / "group"
    aci_state_dirs.append(state_dir)
    run = ccr("aci", "run", str(template), "--endpoints", endpoints, "--contract", "aci-lifecycle",
              "--state-dir", str(state_dir))
    assert "deployment accepted in CGS for contract aci-lifecycle" in run.stdout
    assert "init container ccr-firewall exited 0" in run.stdout
    assert "is running on the simulated platform" in run.stdout
    state = GroupState.load(state_dir)
    status = json.loads(ccr("aci", "status", "--state-dir", str(state_dir), "--json").stdout)
    assert status["platform"] == "simulated" and status["governed"] is True
    assert status["containers"]["ccr-firewall"] == {"init": True, "status": "exited", "exit_code": 0}
    written = json.loads(template.read_text())["resources"][0]["properties"]
    assert list(status["containers"]) == [c["name"] for c in written["initContainers"] + written["containers"]]
    inspected = json.loads(Podman().run_cli(["inspect", state.container_name("ccr-skr")]))[0]
    skr = next(c for c in written["containers"] if c["name"] == "ccr-skr")["properties"]
    assert [inspected["Path"], *inspected["Args"]] == skr["command"]
    env = dict(e.split("=", 1) for e in inspected["Config"]["Env"])
    assert {e["name"]: env[e["name"]] for e in skr["environmentVariables"]} == \
        {e["name"]: e["value"] for e in skr["environmentVariables"]}
    context = env["UVM_SECURITY_CONTEXT_DIR"]
    listing = Podman().run_cli(["exec", state.container_name("ccr-launcher"), "ls", context]).split()
    assert sorted(listing) == ["ccr-simulated-sev-guest.sock", "host-amd-cert-base64", "reference-info-base64",
                               "security-policy-base64"]
    unprivileged = Podman().run_cli(["exec", state.container_name("ccr-governance"), "ls", context]).split()
    assert "ccr-simulated-sev-guest.sock" not in unprivileged
    policy = Podman().run_cli(["exec", state.container_name("ccr-governance"), "cat",
                               f"{context}/security-policy-base64"])
    assert policy == written["confidentialComputeProperties"]["ccePolicy"]
    assert inspected["HostConfig"]["NanoCpus"] == int(skr["resources"]["requests"]["cpu"] * 1e9)
    logs = ccr("aci", "logs", "aci-lifecycle", "ccr-governance", "--state-dir", str(state_dir))
    assert logs.returncode == 0
    assert processes_in(state.netns)

    ccr("aci", "delete", "--state-dir", str(state_dir))
    assert remaining(state) == []
    assert not processes_in(state.netns)
    assert str(state_dir) not in Path("/proc/mounts").read_text()
    assert not (state_dir / "p" / "ccr-simulated-sev-guest.sock").exists()
    record = state.daemon_record
    assert record is not None and not is_running(record)
