"""The three demos through the local Confidential ACI simulator (`demo.py --aci`): the room runs from
`ccr spec render arm`'s template alone (no CCR_ENDPOINTS, no mock platform in any container: what the
simulator adds is the security-context directory, the SEV-SNP socket and the image store), deployed as the
contract's members accepted it in CGS, with the same results as `ccr room up` (tests/system/localroom):
the consumer decrypts the expected answer, the API allows and denies the same requests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sidecars.localroom.netns import netns_exists
from tests.system.rooms import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]


def run_demo(example: str, run: Path) -> str:
    result = subprocess.run([sys.executable, f"examples/{example}/demo.py", "--run-dir", str(run), "--aci"],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert "deployment accepted in CGS for contract" in result.stdout
    assert "is running on the simulated platform" in result.stdout
    assert not (run / "aci" / "state.json").exists() and not netns_exists(f"ccr-aci-{example}")
    return result.stdout


def test_job_demo_through_the_simulator(tmp_path):
    out = run_demo("cleanroomhello-job", tmp_path)
    assert "app exited (exit code 0)" in out
    assert "the room's answer is the expected one" in out
    template = json.loads((tmp_path / "arm" / "cleanroom-arm-template.json").read_text())
    names = {e["name"] for group in ("initContainers", "containers")
             for c in template["resources"][0]["properties"][group] for e in c["properties"]["environmentVariables"]}
    assert names == {"CCR_SPEC", "CCR_SIDECAR"}  # the room configured itself from the template alone


def test_api_demo_through_the_simulator(tmp_path):
    out = run_demo("cleanroomhello-api", tmp_path)
    assert "GET /hello  -> 200" in out and "GET /secret -> 403" in out
    assert "received GET /hello" in out and "received GET /secret" not in out
    assert "app status: stopped" in out


def test_db_access_demo_through_the_simulator(tmp_path):
    out = run_demo("db-access", tmp_path)
    assert "the room's answer is the expected one" in out
    assert '"action":"release_secret"' in out
    assert "ccrdb-" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
