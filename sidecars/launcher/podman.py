"""A small client for the podman CLI, always with the project's containers.conf.

Only the operations the room needs: import a rootfs, build, inspect digests, run detached, wait, stop,
remove. Every call fails with a ProcessError carrying podman's own message.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import ProcessError

CONTAINERS_CONF = Path(__file__).resolve().parents[2] / "images" / "containers.conf"


def _containers_conf() -> Path:
    """The checkout's file, or `CCR_CONTAINERS_CONF` (the runtime image carries its own copy)."""
    return Path(os.environ.get("CCR_CONTAINERS_CONF", CONTAINERS_CONF))


@dataclass(frozen=True)
class Podman:
    binary: str = "podman"
    containers_conf: Path = field(default_factory=_containers_conf)

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.containers_conf)}

    def run_cli(self, args: Sequence[str], *, input: bytes | None = None, stdin=None,
                timeout: float | None = 600) -> str:
        try:
            result = subprocess.run([self.binary, *args], input=input, stdin=stdin, capture_output=True,
                                    env=self.env(), timeout=timeout)
        except FileNotFoundError:
            raise ProcessError("podman is not installed (make setup installs it)") from None
        except subprocess.TimeoutExpired:
            raise ProcessError(f"podman {args[0]} did not finish within {timeout:g} s") from None
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise ProcessError(f"podman {args[0]} failed: {message[-1] if message else result.returncode}")
        return result.stdout.decode(errors="replace")

    def image_exists(self, ref: str) -> bool:
        return subprocess.run([self.binary, "image", "exists", ref], env=self.env()).returncode == 0

    def image_digest(self, ref: str) -> str:
        """The manifest digest (`sha256:…`) of a local image: what a pinned reference names."""
        return self.run_cli(["image", "inspect", "--format", "{{.Digest}}", ref]).strip()

    def image_inspect(self, ref: str) -> dict:
        return json.loads(self.run_cli(["image", "inspect", ref]))[0]

    def import_tar(self, tar_path: Path, ref: str, changes: Iterable[str] = ()) -> str:
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        with open(tar_path, "rb") as tar:
            self.run_cli([*args, "-", ref], stdin=tar)
        return self.image_digest(ref)

    def build(self, context: Path, ref: str, containerfile: Path | None = None,
              build_args: dict[str, str] | None = None, timestamp: int | None = None) -> str:
        """Build and return the manifest digest. `timestamp` fixes every created time and file mtime
        in the new layers, so the same context gives the same image."""
        args = ["build", "--pull=never", "--quiet", "-t", ref]
        if timestamp is not None:
            args += ["--timestamp", str(timestamp)]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if containerfile is not None:
            args += ["-f", str(containerfile)]
        self.run_cli([*args, str(context)])
        return self.image_digest(ref)

    def container_exists(self, name: str) -> bool:
        return subprocess.run([self.binary, "container", "exists", name], env=self.env()).returncode == 0

    def remove_container(self, name: str) -> None:
        if self.container_exists(name):
            self.run_cli(["rm", "--force", "--time", "2", name])
