"""The job room from its compose rendering, run for real with podman-compose (images built locally).

The stand-ins start first (they are services of the same compose project); the parties then do what the
job demo does (contract in CGS, keys bound to HOST_DATA, encrypted data published) from inside the
group's network namespace, where the stand-ins listen; then the room's sidecars start, the launcher runs
the app, and the consumer decrypts the result from the sink: it must be the demo's expected answer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sidecars.common.process import wait_until
from sidecars.launcher.podman import Podman
from sidecars.local.roomhttp import room_status

pytestmark = [pytest.mark.root, pytest.mark.slow]
STAND_INS = ("maa", "cgs", "entra", "keyvault", "azurite")
LAUNCHER_PORT = 8200
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"


def _ccr(*args: str, netns: str | None = None, timeout: float = 900) -> str:
    argv = [sys.executable, "-m", "sidecars", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"ccr {' '.join(args)}: {result.stderr[-3000:]}"
    return result.stdout


def _demo_module(repo: Path):
    path = repo / "examples/cleanroomhello-job/demo.py"
    spec = importlib.util.spec_from_file_location("job_demo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Compose:
    def __init__(self, project: str, file: Path, env_file: Path):
        self.project, self.file, self.env_file = project, file, env_file

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(PODMAN_COMPOSE), "--env-file", str(self.env_file), "-p", self.project,
                                 "-f", str(self.file), *args], capture_output=True, text=True, timeout=300,
                                env=Podman().env())
        assert not check or result.returncode == 0, f"podman-compose {args[0]}: {result.stderr[-3000:]}"
        return result

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, services) -> str:
        out = []
        for service in services:
            done = subprocess.run(["podman", "logs", "--tail", "15", self.container(service)], capture_output=True,
                                  text=True, env=Podman().env())
            out.append(f"--- {service}\n{done.stdout}{done.stderr}")
        return "\n".join(out)


@pytest.fixture
def room(repo, tmp_path):
    spec = tmp_path / "spec.yaml"
    shutil.copy(repo / "examples/cleanroomhello-job/spec.yaml", spec)
    _ccr("images", "build", "--sidecars", "--emulators")
    _ccr("images", "build", "cleanroomhello-job", "--pin", str(spec))
    compose_file, emulation = tmp_path / "compose.yml", tmp_path / "emulation"
    _ccr("render", "compose", str(spec), "-o", str(compose_file), "--prepare", str(emulation))
    compose = Compose(f"ccr-test-{os.getpid()}", compose_file, emulation / "compose.env")
    netns = f"ccr-cmp-{os.getpid()}"
    try:
        compose.run("up", "-d", *STAND_INS)
        pid = Podman().run_cli(["inspect", "--format", "{{.State.Pid}}", compose.container("room")]).strip()
        subprocess.run(["ip", "netns", "attach", netns, pid], check=True)
        wait_until(lambda: all((emulation / f"{s}.ready.json").exists() for s in STAND_INS), 60, "stand-ins")
        yield compose, spec, emulation, netns
    finally:
        compose.run("down", "-v", "-t", "1", check=False)
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
        _ccr("render", "compose", "--release", str(emulation))
        assert not [line for line in Path("/proc/mounts").read_text().splitlines() if str(emulation) in line]
        assert not Podman().run_cli(["ps", "-a", "--filter", f"name={compose.project}", "--format", "{{.Names}}"])
        assert not Podman().run_cli(["volume", "ls", "--filter", f"name={compose.project}", "--format", "{{.Name}}"])


def test_job_room_runs_under_podman_compose(room, repo, tmp_path):
    compose, spec, emulation, netns = room
    endpoints = str(emulation / "endpoints.json")
    host_data = _ccr("deploy", "policy-hash", str(spec), "--endpoints", endpoints).strip()
    assert f"CCR_HOST_DATA={host_data}" in (emulation / "compose.env").read_text()
    members = tmp_path / "members"
    _ccr("governance", "setup", str(spec), "--endpoints", endpoints, "--members-dir", str(members), netns=netns)
    expected = _demo_module(repo).make_data(tmp_path / "data")
    for party, volume in (("publisher", "publisher-input"), ("partner", "partner-input"),
                          ("consumer", "consumer-output")):
        _ccr("keys", "create-kek", "--endpoints", endpoints, "--name", f"{party}-kek", "--host-data", host_data,
             netns=netns)
        _ccr("data", "publish", str(tmp_path / "data" / party), "--spec", str(spec), "--volume", volume,
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

    result_dir = tmp_path / "result"
    _ccr("data", "download", str(result_dir), "--spec", str(spec), "--volume", "consumer-output",
         "--endpoints", endpoints, "--dek-file", str(members / "consumer-dek.json"), netns=netns)
    assert json.loads((result_dir / "result.json").read_text()) == expected
