"""The job room from its compose rendering, run for real with podman-compose (images built locally).

The stand-ins start first (they are services of the same compose project); the parties then do what the
job demo does (contract in CGS, keys bound to HOST_DATA, encrypted data published) from inside the
group's network namespace, where the stand-ins listen; then the room's sidecars start, the launcher runs
the app, and the consumer decrypts the result from the sink: it must be the demo's expected answer.
"""

from __future__ import annotations

import json

import pytest
import yaml

from examples.demo_support import load_demo
from sidecars.common.process import wait_until
from sidecars.localroom.roomhttp import room_status

from .conftest import ccr

pytestmark = [pytest.mark.root, pytest.mark.slow]
LAUNCHER_PORT = 8200


def test_job_room_runs_under_podman_compose(compose_room, tmp_path):
    room = compose_room("cleanroomhello-job")
    compose, spec, emulation, netns, endpoints = room.compose, room.spec, room.emulation, room.netns, room.endpoints
    host_data = ccr("spec", "render", "policy-hash", str(spec), "--endpoints", endpoints).strip()
    assert f"CCR_HOST_DATA={host_data}" in (emulation / "compose.env").read_text()
    members = tmp_path / "members"
    ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(members), netns=netns)
    expected = load_demo("cleanroomhello-job").make_data(tmp_path / "data")
    for party, volume in (("publisher", "publisher-input"), ("partner", "partner-input"),
                          ("consumer", "consumer-output")):
        ccr("keys", "create-kek", "--endpoints", endpoints, "--name", f"{party}-kek", "--host-data", host_data,
             netns=netns)
        ccr("data", "publish", str(tmp_path / "data" / party), "--spec", str(spec), "--volume", volume,
             "--endpoints", endpoints, "--dek-file", str(members / f"{party}-dek.json"), netns=netns)

    compose.run("up", "-d")
    final: list[dict] = []

    def job_done() -> bool:
        answer = room_status(netns, LAUNCHER_PORT)
        body = answer.json() if answer is not None and answer.body[:1] == b"{" else {}
        if body.get("status") in ("exited", "failed", "stopped"):
            final.append(body)
            return True
        return False

    try:
        wait_until(job_done, 120, "the job to finish", interval=0.5)
    except Exception:
        pytest.fail("job did not finish:\n" + compose.logs(("skr", "governance", "identity", "volumes", "launcher")))
    assert final[0]["status"] == "exited", json.dumps(final[0]) + compose.logs(("volumes", "launcher"))
    assert final[0]["app"]["exit_code"] == 0

    # The sink's manifest is signed when the room's volumes stop (the end of the run), then checked by the
    # consumer with the contract CA it reads from CGS.
    compose.run("stop", "-t", "30", "volumes")
    result_dir = tmp_path / "result"
    contract = yaml.safe_load(spec.read_text())["contract"]["id"]
    shown = ccr("governance", "ca", "show", contract, "--endpoints", endpoints, "--identity", str(members / "consumer"),
                netns=netns)
    ca = tmp_path / "contract-ca.pem"
    ca.write_text(shown[shown.index("-----BEGIN CERTIFICATE-----"):])
    ccr("data", "download", "-o", str(result_dir), "--spec", str(spec), "--volume", "consumer-output",
         "--endpoints", endpoints, "--dek-file", str(members / "consumer-dek.json"), "--contract-ca", str(ca),
         netns=netns)
    assert json.loads((result_dir / "result.json").read_text()) == expected
