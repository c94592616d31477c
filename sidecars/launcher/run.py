"""Running the app container: hardened podman flags, output capture, exit and stop.

The app is untrusted. It runs as a non-root uid with a read-only root filesystem, every capability
dropped, no privilege escalation, in the room's network namespace (so the firewall's rules apply to it),
with only the room's volumes mounted and cpu/memory limits set. `podman_run_args` is the single place
these flags are decided; the container policy is checked against the same `AppLaunch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..common.logs import get_logger
from .podman import Podman

log = get_logger(__name__)
LineSink = Callable[[str, str], Awaitable[None]]  # (stream, line)


@dataclass(frozen=True)
class Mount:
    """`volume` names what is mounted (a datasource/datasink, or whatever else a spec asked for);
    `source` is the host path podman binds."""

    volume: str
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class AppLaunch:
    """Everything that decides how the app container runs."""

    container_name: str
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    uid: int
    gid: int
    mounts: tuple[Mount, ...]
    cpus: float
    memory_gb: float
    netns: str | None
    privileged: bool = False
    capabilities: tuple[str, ...] = ()
    working_dir: str | None = None
    read_only_rootfs: bool = True
    no_new_privileges: bool = True


def podman_run_args(launch: AppLaunch) -> list[str]:
    args = ["run", "--rm", "--name", launch.container_name, "--pull=never",
            "--user", f"{launch.uid}:{launch.gid}", "--cap-drop=ALL",
            # A writable /tmp that vanishes with the container: apps expect one, the root stays read-only.
            "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m,mode=1777",
            "--cpus", f"{launch.cpus:g}", "--memory", f"{int(launch.memory_gb * 1024)}m",
            "--network", f"ns:/run/netns/{launch.netns}" if launch.netns else "none"]
    if launch.read_only_rootfs:
        args.append("--read-only")
    if launch.no_new_privileges:
        args += ["--security-opt", "no-new-privileges"]
    if launch.privileged:
        args.append("--privileged")
    for cap in launch.capabilities:
        args += ["--cap-add", cap]
    if launch.working_dir:
        args += ["--workdir", launch.working_dir]
    for mount in launch.mounts:
        args += ["-v", f"{mount.source}:{mount.target}:{'ro' if mount.read_only else 'rw'}"]
    for key, value in launch.env:
        args += ["--env", f"{key}={value}"]
    return [*args, launch.image, *launch.command]


@dataclass
class AppProcess:
    """A running (or finished) app container. `status` follows the reference's vocabulary."""

    launch: AppLaunch
    podman: Podman = field(default_factory=Podman)
    status: str = "not_started"  # not_started | running | exited | stopped | failed
    exit_code: int | None = None
    started_at: float | None = None
    _proc: asyncio.subprocess.Process | None = None
    _readers: list[asyncio.Task] = field(default_factory=list)
    _stopping: bool = False

    async def start(self, on_line: LineSink) -> None:
        self.podman.remove_container(self.launch.container_name)
        self._proc = await asyncio.create_subprocess_exec(
            self.podman.binary, *podman_run_args(self.launch), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.podman.env())
        self.started_at = time.time()
        self.status = "running"
        self._readers = [asyncio.create_task(self._pump(self._proc.stdout, "stdout", on_line)),
                         asyncio.create_task(self._pump(self._proc.stderr, "stderr", on_line))]

    @staticmethod
    async def _pump(stream: asyncio.StreamReader | None, name: str, on_line: LineSink) -> None:
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            try:
                await on_line(name, text)
            except Exception as exc:  # a log sink failing must not kill the app's output pipe
                log.warning("app %s line not delivered: %s", name, exc)

    async def wait(self) -> int:
        assert self._proc is not None
        code = await self._proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self.exit_code = code
        if self._stopping:
            self.status = "stopped"
        else:
            self.status = "exited" if code == 0 else "failed"
        return code

    async def stop(self, timeout: float = 5.0) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._stopping = True
        stop = await asyncio.create_subprocess_exec(
            self.podman.binary, "stop", "--time", f"{int(timeout)}", self.launch.container_name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=self.podman.env())
        await stop.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wait(), timeout + 5)
