"""The group's containers as podman runs them: one pod, every container in the group's network namespace.

Each container gets exactly the template's image, command (ACI's `command` replaces the image's
ENTRYPOINT and CMD: `--entrypoint` is its first word, the rest its arguments), environment, emptyDir
mounts, privileges, added capabilities and resources (ACI caps a container at its request when no limit
is given: `--cpus`, `--memory`). What the platform adds: HOSTNAME and TERM, the security-context directory
(read-only) and UVM_SECURITY_CONTEXT_DIR, and for privileged containers the simulated SEV-SNP socket (in
their security-context directory) and the simulated registry: the host's image store read-only at
/var/lib/ccr-images (the runtime image's storage.conf names it as an additional store) with a tmpfs for
the container's own images at /var/lib/containers (a real C-ACI container pulls from a registry over the
network; nested overlay on the container's overlay root cannot work, on a tmpfs it does).

The pod has no infra container (podman builds its pause image from catatonit, which this machine lacks):
the containers join the group's netns themselves (`--network ns:/run/netns/NAME`), which is what the
infra container would have given them.
"""

from __future__ import annotations

import json
import math

from ..launcher.podman import Podman
from .enforcement import ContainerPlan
from .platform import SECURITY_CONTEXT_ENV
from .state import LABEL, GroupState

HOST_IMAGE_STORE = "/var/lib/containers/storage"
SIMULATED_REGISTRY = "/var/lib/ccr-images"
CONTAINER_IMAGE_STORE = "/var/lib/containers"
STOP_TIMEOUT_S = 10


def create_pod(podman: Podman, state: GroupState) -> None:
    podman.run_cli(["pod", "create", "--name", state.pod, "--infra=false", "--label", f"{LABEL}={state.name}"])


def memory_bytes(memory_gb: float) -> int:
    return math.floor(memory_gb * 1024 ** 3)


def create_argv(state: GroupState, plan: ContainerPlan) -> list[str]:
    container = plan.definition
    context_dir = state.privileged_context if container.privileged else state.plain_context
    argv = ["create", "--pod", state.pod, "--name", state.container_name(container.name),
            "--label", f"{LABEL}={state.name}", "--network", f"ns:/run/netns/{state.netns}",
            "--hostname", plan.container_id[:12], "--user", f"{plan.uid}:{plan.gid}", "--workdir", plan.working_dir,
            "--stop-timeout", str(STOP_TIMEOUT_S), "--pull", "never", "--restart", "no",
            "-v", f"{context_dir}:{state.context_mount}:ro"]
    for key, value in plan.env:
        if key != "HOSTNAME":
            argv += ["--env", f"{key}={value}"]
    argv += ["--env", f"{SECURITY_CONTEXT_ENV}={state.context_mount}"]
    for mount in container.mounts:
        options = ["ro" if mount.read_only else "rw", plan.propagation[mount.path]]
        argv += ["-v", f"{state.volume_dir(mount.volume)}:{mount.path}:{','.join(options)}"]
    if container.privileged:
        argv += ["--privileged", "-v", f"{HOST_IMAGE_STORE}:{SIMULATED_REGISTRY}:ro",
                 "--mount", f"type=tmpfs,destination={CONTAINER_IMAGE_STORE}"]
    for capability in container.capabilities_add:
        argv += ["--cap-add", capability.removeprefix("CAP_")]
    if container.cpu is not None:
        argv += ["--cpus", f"{container.cpu:g}"]
    if container.memory_gb is not None:
        argv += ["--memory", str(memory_bytes(container.memory_gb))]
    if container.command:
        argv += ["--entrypoint", json.dumps([container.command[0]]), container.image, *container.command[1:]]
    else:
        argv.append(container.image)
    return argv


def container_states(podman: Podman, state: GroupState) -> dict[str, dict]:
    """Per container of the group (template name): podman's State (Status, ExitCode, ...); absent ones left out."""
    names = [state.container_name(c) for c in (*state.init_containers, *state.containers)]
    found: dict[str, dict] = {}
    listed = podman.run_cli(["ps", "-a", "--filter", f"label={LABEL}={state.name}", "--format", "{{.Names}}"])
    present = [n for n in names if n in listed.split()]
    if present:
        for entry in json.loads(podman.run_cli(["inspect", *present])):
            found[entry["Name"].removeprefix(f"{state.pod}-")] = entry["State"]
    return found
