"""`ccr firewall ...` and `ccr sidecar run firewall` (its HTTP API) on a room, with the rules tampered with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from sidecars.common.firewall_client import FirewallClient
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.firewall import FirewallNotInForce

from .conftest import EGRESS, OUTSIDE_V4, VARIABLES, spec_data
from .tamper import delete_rule

pytestmark = pytest.mark.root
CCR = str(Path(sys.executable).with_name("ccr"))
VARS = [arg for name, value in VARIABLES.items() for arg in ("--var", f"{name}={value}")]


def ccr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CCR, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_data(EGRESS)))
    return path


def test_firewall_commands(room, spec_file):
    # One backend here (each command is a process start); the sidecar test below runs both.
    backend = "nftables"
    where = ["--netns", room.name, "--backend", backend]
    applied = ccr("firewall", "apply", str(spec_file), *where, *VARS)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("applied ")
    assert room.attack("tcp", OUTSIDE_V4, "80")["banner"] == f"proxy:15002 original={OUTSIDE_V4}:80"
    assert ccr("firewall", "verify", str(spec_file), *where, *VARS).stdout.startswith("OK")
    assert "ccr:egress-http" in ccr("firewall", "show", *where).stdout

    delete_rule(backend, room.name, "tcp-reset")
    verify = ccr("firewall", "verify", str(spec_file), *where, *VARS)
    assert verify.returncode == 1
    assert "rule tcp-reset is missing" in verify.stdout

    assert ccr("firewall", "clean", *where).stdout.startswith("removed the firewall rules")
    assert ccr("firewall", "clean", *where).stdout.startswith("no firewall rules to remove")
    assert room.attack("tcp", OUTSIDE_V4, "22")["ok"]


def test_user_mistakes_are_one_line(room, spec_file):
    missing = ccr("firewall", "apply", str(spec_file), "--netns", f"{room.name}-nope", *VARS)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"ccr: error: network namespace '{room.name}-nope' does not exist " \
                                     f"(create it with: ip netns add {room.name}-nope)"
    no_vars = ccr("firewall", "apply", str(spec_file), "--netns", room.name)
    assert no_vars.returncode == 1 and "undefined variable ${cgs_endpoint}" in no_vars.stderr
    assert len(no_vars.stderr.strip().splitlines()) == 1


def test_sidecar_applies_and_answers_verify(room, backend, spec_file, tmp_path):
    ready = tmp_path / "ready.json"
    argv = [CCR, "sidecar", "run", "firewall", "--spec", str(spec_file), *VARS, "--netns", room.name,
            "--backend", backend, "--port", "0", "--ready-file", str(ready)]
    with ManagedProcess("firewall-sidecar", argv, ready=file_exists(ready), ready_timeout=20):
        url = json.loads(ready.read_text())["url"]
        # The rules were in force before the API answered.
        assert not room.attack("udp", OUTSIDE_V4, "53")["ok"]
        status = httpx.get(f"{url}/status").json()
        assert status["status"] == "enforced" and status["backend"] == backend
        verified = httpx.post(f"{url}/verify")
        assert verified.status_code == 200 and verified.json()["ok"] is True
        client = FirewallClient(url)
        assert client.require_in_force().ok

        delete_rule(backend, room.name, "in-drop", chain="filter_input")
        refused = httpx.post(f"{url}/verify")
        assert refused.status_code == 409
        body = refused.json()
        assert body["error"]["code"] == "FirewallNotInForce"
        assert any(d.startswith("rule in-drop is missing") for d in body["differences"]), body
        assert httpx.get(f"{url}/status").json()["status"] == "not-in-force"
        with pytest.raises(FirewallNotInForce, match="rule in-drop is missing"):
            client.require_in_force()
    # Fail closed: the sidecar's exit leaves the rules in force.
    assert not room.attack("udp", OUTSIDE_V4, "53")["ok"]


def test_sidecar_that_cannot_apply_exits(room, spec_file):
    done = subprocess.run([CCR, "sidecar", "run", "firewall", "--spec", str(spec_file), *VARS,
                           "--netns", f"{room.name}-nope", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"network namespace '{room.name}-nope' does not exist "
                                        f"(create it with: ip netns add {room.name}-nope)")
