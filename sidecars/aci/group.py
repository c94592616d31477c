"""Run, inspect and delete a simulated Confidential ACI container group.

`run_group` does what the platform does when ARM deploys the template: check every container against
the CCE policy (nothing starts if one is refused), make the group's network namespace, volumes and
security-context directories, start the background process (SEV-SNP socket, loopback forwarders), run
the init containers in order (each must exit 0), then start the containers, and return once they run.
Any failure tears everything down again (`delete_group`), which leaves no pod, container, netns, mount,
process or socket behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..attestation.mock import MockPlatform
from ..common.errors import CcrError, ConfigError, ProcessError
from ..common.mounts import make_shared, mounts_below
from ..common.process import ManagedProcess, file_exists, is_running, stop_recorded, wait_until
from ..launcher.podman import Podman
from ..localroom.netns import create_room_network, delete_room_network, netns_exists, stop_processes_in
from ..renderings.layers import ImageResolver
from . import pod
from .enforcement import ContainerPlan, enforce_group
from .platform import context_mount_point, socket_path, write_security_context
from .state import LABEL, GroupState
from .template import GroupDefinition, template_sha256

Progress = Callable[[str], None]
INIT_TIMEOUT_S = 120.0
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunOptions:
    state_dir: Path
    mock_platform_dir: Path
    forwarded_ports: tuple[int, ...] = ()
    governed: bool = True


def loopback_ports(endpoints: dict) -> tuple[int, ...]:
    """The stand-ins' host loopback ports named in an endpoints.json (what the group must reach)."""
    ports = set()
    for value in endpoints.values():
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            url = urlsplit(value)
            if url.hostname in ("127.0.0.1", "localhost") and url.port:
                ports.add(url.port)
    return tuple(sorted(ports))


def netns_name(group: str) -> str:
    # a netns name is a file name; an ACI group name (<= 63 of [a-z0-9-]) is one already
    return f"ccr-aci-{group}"


def _prepare_volumes(state: GroupState, plans: list[ContainerPlan], volumes: tuple[str, ...]) -> None:
    shared = {m.volume for p in plans for m in p.definition.mounts if p.propagation[m.path] == "rshared"}
    for volume in volumes:
        directory = state.volume_dir(volume)
        directory.mkdir(parents=True, exist_ok=True)
        if volume in shared:
            # the volumes sidecar's FUSE mounts must reach the launcher
            make_shared(directory)


def _start_daemon(state: GroupState) -> None:
    socket_path(state.privileged_context)  # refuses a path too long for the socket before anything starts
    daemon = ManagedProcess("aci-simulator", [sys.executable, "-m", "sidecars.aci.platformd", state.state_dir],
                            ready=file_exists(state.daemon_ready), ready_timeout=20, log_path=state.daemon_log)
    daemon.start()
    # Detached on purpose: it outlives `ccr aci run`; `ccr aci delete` stops it through its record.
    state.daemon = daemon.record().__dict__
    state.save()
    wait_until(lambda: socket_path(state.privileged_context).exists(), 10, "the simulated SEV-SNP socket")


def _wait_exit(podman: Podman, name: str, timeout: float) -> int:
    try:
        return int(podman.run_cli(["wait", name], timeout=timeout).strip().splitlines()[-1])
    except ProcessError as exc:
        raise ProcessError(f"init container {name} did not finish: {exc}") from None


def _tail(podman: Podman, name: str, lines: int = 5) -> str:
    done = subprocess.run(["podman", "logs", "--tail", str(lines), name], capture_output=True, text=True,
                          env=podman.env())
    text = " | ".join((done.stdout + done.stderr).strip().splitlines()[-lines:])
    return f" (last output: {text})" if text else ""


def run_group(group: GroupDefinition, options: RunOptions, images: ImageResolver, progress: Progress,
              podman: Podman | None = None) -> GroupState:
    podman = podman or Podman()
    state_dir = options.state_dir.resolve()
    if (state_dir / "state.json").exists():
        raise ConfigError(f"a simulated group already has its state in {state_dir}: `ccr aci delete` it first")
    if netns_exists(netns_name(group.name)):
        raise ConfigError(f"network namespace {netns_name(group.name)} exists: is group {group.name} already "
                          "running? (`ccr aci delete`)")
    progress(f"container group {group.name}: {len(group.init_containers)} init containers, "
             f"{len(group.containers)} containers; HOST_DATA {group.host_data}")
    # The guest agent's decision for every container comes first: a refused one means nothing runs.
    plans = enforce_group(group, images, progress)
    state_dir.mkdir(parents=True, exist_ok=True)
    state = GroupState(name=group.name, state_dir=str(state_dir), netns=netns_name(group.name),
                       pod=f"ccr-aci-{group.name}", host_data=group.host_data,
                       template_sha256=template_sha256(group.template), context_mount=context_mount_point(),
                       init_containers=[c.name for c in group.init_containers],
                       containers=[c.name for c in group.containers],
                       forwarded_ports=list(options.forwarded_ports),
                       mock_platform_dir=str(options.mock_platform_dir.resolve()), governed=options.governed)
    state.save()
    try:
        _bring_up(state, group, plans, podman, progress)
    except (CcrError, OSError, subprocess.CalledProcessError) as exc:
        delete_group(state, podman)
        if isinstance(exc, subprocess.CalledProcessError):
            raise ProcessError(f"{' '.join(exc.cmd)} failed: {exc.stderr.decode(errors='replace').strip()}") from None
        if isinstance(exc, OSError):
            raise ProcessError(f"group {group.name}: {exc}") from None
        raise
    return state


def _bring_up(state: GroupState, group: GroupDefinition, plans: list[ContainerPlan], podman: Podman,
              progress: Progress) -> None:
    state.ip = create_room_network(state.netns).room_v4
    state.save()
    progress(f"network namespace {state.netns} (loopback forwarded ports: "
             f"{', '.join(map(str, state.forwarded_ports)) or 'none'})")
    _prepare_volumes(state, plans, group.volumes)
    platform = MockPlatform.load(state.mock_platform_dir)
    for directory in (state.plain_context, state.privileged_context):
        write_security_context(directory, platform, group.cce_policy_base64)
    _start_daemon(state)
    progress(f"security context at {state.context_mount}; simulated SEV-SNP socket for privileged containers")
    pod.create_pod(podman, state)
    by_name = {p.definition.name: p for p in plans}
    for name in state.init_containers:
        container = state.container_name(name)
        podman.run_cli(pod.create_argv(state, by_name[name]))
        podman.run_cli(["start", container])
        code = _wait_exit(podman, container, INIT_TIMEOUT_S)
        if code != 0:
            raise ProcessError(f"init container {name} exited with code {code}{_tail(podman, container)}")
        progress(f"init container {name} exited 0")
    names = [state.container_name(n) for n in state.containers]
    for name in state.containers:
        podman.run_cli(pod.create_argv(state, by_name[name]))
    podman.run_cli(["start", *names])

    def started() -> bool:
        states = pod.container_states(podman, state)
        return all(states.get(n, {}).get("StartedAt", "").startswith(("1", "2")) for n in state.containers)

    wait_until(started, START_TIMEOUT_S, "the group's containers")
    for name, found in pod.container_states(podman, state).items():
        if name in state.containers:
            progress(f"container {name}: {found.get('Status')}")


def delete_group(state: GroupState, podman: Podman | None = None, progress: Progress = lambda _l: None) -> list[str]:
    """Remove everything the group made; returns what was found still there after removal (should be [])."""
    podman = podman or Podman()
    remove_pod = ["podman", "pod", "rm", "--force", "--ignore", "-t", str(pod.STOP_TIMEOUT_S), state.pod]
    removed = subprocess.run(remove_pod, capture_output=True, text=True, env=podman.env())
    leftover = podman.run_cli(["ps", "-a", "--filter", f"label={LABEL}={state.name}", "--format", "{{.Names}}"])
    if removed.returncode != 0 or leftover.split():
        # A container that was still stopping keeps the pod; remove it by name, then the pod again.
        for name in leftover.split():
            subprocess.run(["podman", "rm", "--force", "-t", "1", name], capture_output=True, env=podman.env())
        subprocess.run(remove_pod, capture_output=True, env=podman.env())
    progress(f"pod {state.pod} removed")
    record = state.daemon_record
    if record is not None and stop_recorded(record):
        progress("simulator process stopped")
    if netns_exists(state.netns):
        stop_processes_in(state.netns)
        delete_room_network(state.netns)
        progress(f"network namespace {state.netns} deleted")
    directory = state.directory
    for target in sorted(mounts_below(directory), reverse=True):
        subprocess.run(["umount", "--lazy", target], capture_output=True)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
    return remaining(state, podman)


def remaining(state: GroupState, podman: Podman | None = None) -> list[str]:
    """What of the group still exists on the host (for `delete` to check and the tests to assert)."""
    podman = podman or Podman()
    left = []
    if subprocess.run(["podman", "pod", "exists", state.pod], env=podman.env()).returncode == 0:
        left.append(f"pod {state.pod}")
    names = podman.run_cli(["ps", "-a", "--filter", f"label={LABEL}={state.name}", "--format", "{{.Names}}"])
    left += [f"container {n}" for n in names.split()]
    if netns_exists(state.netns):
        left.append(f"network namespace {state.netns}")
    left += [f"mount {m}" for m in mounts_below(state.directory)] if state.directory.exists() else []
    record = state.daemon_record
    if record is not None and is_running(record):
        left.append(f"process {record.pid}")
    if state.directory.exists():
        left.append(f"directory {state.directory}")
    return left

