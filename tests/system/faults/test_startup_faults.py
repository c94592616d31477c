"""Services slow or unreachable while a room starts: a service slower than usual but within its timeout
still lets the room start; one that does not answer in time, or not at all, stops the room at the step that
needed it, in one line naming the step and the service, within a bounded time, and nothing is left behind.

Faults are injected on loopback only: a stand-in frozen with SIGSTOP (it accepts connections and answers
nothing), or a service's URL pointed at a closed port (`--var`, so the contract is a variant of the suite's).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sidecars.localroom.netns import netns_exists
from sidecars.localroom.steps import STATE_FILE

from .conftest import REPO, SINK, Contract, ccr, paused, room_up

pytestmark = [pytest.mark.root, pytest.mark.slow]
#: governance's timeout for one CGS request (sidecars.governance.cgs_client)
CGS_TIMEOUT_S = 10.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def step_ms(output: str, step: str) -> float:
    match = re.search(rf"ok\s+{re.escape(step)}\s+(\d+) ms", output)
    assert match, f"no successful step {step!r} in:\n{output}"
    return float(match.group(1))


def assert_left_nothing(run_dir: Path) -> None:
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert not netns_exists(state["netns"]), "the room's network namespace is still there"


def test_cgs_slow_within_its_timeout_delays_the_room_but_it_starts(contract: Contract, stand_ins, tmp_path):
    run_dir = tmp_path / "room"
    up = subprocess.Popen([sys.executable, "-m", "sidecars", "room", "up", str(contract.spec), "--endpoints",
                           contract.endpoints, "--run-dir", str(run_dir)], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in up.stdout:  # freeze CGS as the room's firewall is up: governance attests to it next
            lines.append(line)
            if "sidecar firewall" in line:
                break
        with paused(stand_ins, "cgs"):
            time.sleep(CGS_TIMEOUT_S / 2)
        output = "".join(lines) + up.communicate(timeout=120)[0]
        assert up.returncode == 0, output
        assert step_ms(output, "execution consent (governance attested to CGS)") + step_ms(
            output, "sidecars skr, governance, identity, telemetry") >= 2000, "CGS was not in the way"
    finally:
        if up.poll() is None:
            up.kill()
        ccr("room", "down", "--run-dir", str(run_dir), check=False)


def test_cgs_frozen_past_its_timeout_stops_the_room_naming_the_step_and_cgs(contract: Contract, stand_ins,
                                                                          tmp_path):
    run_dir = tmp_path / "room"
    began = time.monotonic()
    with paused(stand_ins, "cgs"):
        result = room_up(contract, run_dir, check=False, timeout=120)
    elapsed = time.monotonic() - began
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    failed = [line for line in output.splitlines() if "failed" in line and "step" in line]
    assert failed and "CGS" in failed[-1] and json.loads(Path(contract.endpoints).read_text())["cgs_endpoint"] \
        in failed[-1], output
    assert elapsed < 60, f"the room took {elapsed:.0f} s to give up"
    assert "Traceback" not in output
    assert_left_nothing(run_dir)


def variant(contract: Contract, tmp_path: Path, name: str, **variables: str) -> tuple[Path, list[str]]:
    """The suite's spec under another contract with some ${NAME}s overridden, agreed in CGS, its sink keyed
    with a KEK of its own bound to its HOST_DATA (so the room gets as far as the overridden service)."""
    data = yaml.safe_load(contract.spec.read_text())
    data["name"] = data["contract"]["id"] = name
    data["datasinks"][0]["encryption"]["key"].update(kek_name=f"{name}-kek", dek_secret_name=f"{name}-dek")
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(data))
    var_args = [arg for key, value in variables.items() for arg in ("--var", f"{key}={value}")]
    ccr("governance", "setup", str(spec), "--endpoints", contract.endpoints, "--members-dir",
        str(contract.members), *var_args)
    if "keyvault_url" not in variables:
        endpoints = json.loads(Path(contract.endpoints).read_text())
        host_data = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", contract.endpoints,
                        *var_args).stdout.strip()
        ccr("keys", "create-kek", "--endpoints", contract.endpoints, "--name", f"{name}-kek", "--host-data",
            host_data)
        (tmp_path / "empty").mkdir()
        ccr("data", "publish", str(tmp_path / "empty"), "--spec", str(spec), "--volume", SINK, "--endpoints",
            contract.endpoints, "--storage-url", endpoints["storage_url"], "--dek-file",
            str(tmp_path / "dek.json"), *var_args)
    return spec, var_args


@pytest.mark.parametrize(("key", "path", "service", "step"), [
    ("keyvault_url", "", "Key Vault", "sidecars volumes, proxy"),
    ("storage_url", "/devstoreaccount1", "storage", "sidecars volumes, proxy"),
])
def test_a_service_unreachable_at_startup_stops_the_room_naming_step_and_service(contract: Contract, tmp_path,
                                                                                 key, path, service, step):
    url = f"https://127.0.0.1:{closed_port()}{path}"
    spec, var_args = variant(contract, tmp_path, f"ccr-faults-{key.split('_')[0]}", **{key: url})
    run_dir = tmp_path / "room"
    began = time.monotonic()
    result = ccr("room", "up", str(spec), "--endpoints", contract.endpoints, "--run-dir", str(run_dir), *var_args,
                 check=False, timeout=180)
    elapsed = time.monotonic() - began
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    failure = next(line for line in output.splitlines() if line.startswith("ccr: ") or "failed:" in line)
    assert f"step '{step}' failed" in failure and service.lower() in failure.lower() and "127.0.0.1" in failure, \
        output
    assert elapsed < 90, f"the room took {elapsed:.0f} s to give up"
    assert "Traceback" not in output
    assert_left_nothing(run_dir)
