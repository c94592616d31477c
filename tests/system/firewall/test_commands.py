"""`ccr firewall ...` and `ccr sidecar run firewall` (the room's init container) on a room, with the rules
tampered with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecars.common.firewall_client import VERIFY_ARGV, verify_firewall
from sidecars.firewall import FirewallNotInForce
from sidecars.spec import load_spec

from .conftest import EGRESS, OUTSIDE_V4, VARIABLES, sh, spec_data
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


def _flush(backend: str, netns: str) -> None:
    """Remove every rule, with the system's own tools, as an intruder with root in the room would."""
    if backend == "nftables":
        sh("ip", "netns", "exec", netns, "nft", "flush", "ruleset")
        return
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        for table in ("filter", "nat", "mangle"):
            sh("ip", "netns", "exec", netns, tool, "-t", table, "-F")


def test_the_init_container_applies_and_exits_and_the_launcher_refuses_flushed_rules(room, backend, spec_file,
                                                                                     tmp_path):
    """The firewall as a C-ACI init container: applies, checks, writes ready, exits 0; its rules outlive it.
    Then the attack: the rules are flushed after it exited. The launcher's check (the firewall's own verify,
    run by the launcher in the room's netns, reading the kernel) refuses, so the app would never start."""
    spec = load_spec(spec_file, variables=VARIABLES)
    room_env = {"CCR_SPEC": spec.canonical_json(), "CCR_SIDECAR": "firewall", "CCR_RUN_DIR": str(tmp_path / "run"),
                "CCR_FIREWALL_BACKEND": backend}
    done = subprocess.run(["ip", "netns", "exec", room.name, CCR, "sidecar", "run", "firewall"],
                          env={**os.environ, **room_env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ready = json.loads((tmp_path / "run/ready/firewall.json").read_text())
    assert ready["status"] == "enforced" and ready["backend"] == backend and ready["rules"] > 10
    # Fail closed: the process is gone, the rules are in force.
    assert not room.attack("udp", OUTSIDE_V4, "53")["ok"]

    launcher_env = {**room_env, "CCR_SIDECAR": "launcher"}
    in_room = ("ip", "netns", "exec", room.name, *VERIFY_ARGV)
    assert verify_firewall(launcher_env, in_room).ok
    delete_rule(backend, room.name, "in-drop", chain="filter_input")
    with pytest.raises(FirewallNotInForce, match="rule in-drop is missing"):
        verify_firewall(launcher_env, in_room)

    _flush(backend, room.name)
    assert room.attack("udp", OUTSIDE_V4, "53")["ok"]  # the attack worked: nothing confines the app now
    # The launcher itself, in the room's netns, configured from the room as in a container: it refuses.
    check = ("import asyncio, os; from sidecars.common.room import Room; from sidecars.room.registry import "
             "REGISTRY; from sidecars.launcher.service import Launcher; "
             "launcher = Launcher(REGISTRY.get('launcher').configure(Room.from_environment(os.environ, "
             "REGISTRY.layout()))); asyncio.run(launcher._verify_firewall())")
    refused = subprocess.run(["ip", "netns", "exec", room.name, sys.executable, "-c", check],
                             env={**os.environ, **launcher_env}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "FirewallNotInForce" in refused.stderr, refused.stderr
    assert "the firewall rules in force differ from the spec" in refused.stderr


def test_sidecar_that_cannot_apply_exits(room, spec_file):
    done = subprocess.run([CCR, "sidecar", "run", "firewall", "--spec", str(spec_file), *VARS,
                           "--netns", f"{room.name}-nope", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"network namespace '{room.name}-nope' does not exist "
                                        f"(create it with: ip netns add {room.name}-nope)")
