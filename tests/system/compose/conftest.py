"""A room from its compose rendering, run for real with podman-compose (images built locally).

`compose_room(example)` copies the example's spec (and its policy files) into the test's directory,
builds the sidecar, stand-in and app images, renders the compose file with `ccr spec render compose
--prepare`, starts the stand-ins, and names the group's network namespace on the host (where the
stand-ins listen), so the parties' commands can run inside it. Everything is taken down afterwards and checked gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecars.common.process import wait_until
from sidecars.launcher.podman import Podman

STAND_INS = ("maa", "cgs", "entra", "keyvault", "azurite")
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"


def ccr(*args: str, netns: str | None = None, timeout: float = 900) -> str:
    argv = [sys.executable, "-m", "sidecars", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"ccr {' '.join(args)}: {result.stderr[-3000:]}"
    return result.stdout


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


@dataclass
class ComposeRoom:
    compose: Compose
    spec: Path
    emulation: Path
    netns: str

    @property
    def endpoints(self) -> str:
        return str(self.emulation / "endpoints.json")


@pytest.fixture
def compose_room(repo, tmp_path) -> Iterator[Callable[[str], ComposeRoom]]:
    started: list[ComposeRoom] = []

    def start(example: str) -> ComposeRoom:
        source = repo / "examples" / example
        spec_dir = tmp_path / "spec"
        spec_dir.mkdir()
        for file in [source / "spec.yaml", *source.glob("*.rego")]:
            shutil.copy(file, spec_dir / file.name)
        spec = spec_dir / "spec.yaml"
        ccr("images", "build", "--sidecars", "--emulators")
        ccr("images", "build", example, "--pin", str(spec))
        compose_file, emulation = tmp_path / "compose.yml", tmp_path / "emulation"
        ccr("spec", "render", "compose", str(spec), "-o", str(compose_file), "--prepare", str(emulation))
        room = ComposeRoom(Compose(f"ccr-test-{os.getpid()}", compose_file, emulation / "compose.env"), spec,
                           emulation, f"ccr-cmp-{os.getpid()}")
        started.append(room)
        room.compose.run("up", "-d", *STAND_INS)
        pid = Podman().run_cli(["inspect", "--format", "{{.State.Pid}}", room.compose.container("room")]).strip()
        subprocess.run(["ip", "netns", "attach", room.netns, pid], check=True)
        wait_until(lambda: all((emulation / f"{s}.ready.json").exists() for s in STAND_INS), 60, "stand-ins")
        return room

    yield start
    for room in started:
        room.compose.run("down", "-v", "-t", "1", check=False)
        subprocess.run(["ip", "netns", "delete", room.netns], capture_output=True)
        ccr("emulators", "release-compose", "--run-dir", str(room.emulation))
        assert not [line for line in Path("/proc/mounts").read_text().splitlines() if str(room.emulation) in line]
        project = room.compose.project
        assert not Podman().run_cli(["ps", "-a", "--filter", f"name={project}", "--format", "{{.Names}}"])
        assert not Podman().run_cli(["volume", "ls", "--filter", f"name={project}", "--format", "{{.Name}}"])
