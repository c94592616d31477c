"""The CCE policy enforced on every container the simulator creates, as the confidential guest's GCS does.

For each container, in the order the platform creates them (init containers, then containers), the GCS
asks the group's policy (the template's own `ccePolicy`, evaluated with the framework by the real OPA
engine, `renderings.enforcer.PolicyEnforcer`) at `mount_device` for each of the image's dm-verity layers,
`mount_overlay`, then `create_container` with the OCI process: the template's command, environment
(plus the image's and what the platform adds: HOSTNAME, TERM), mounts, user, privileges and capabilities.
`UVM_SECURITY_CONTEXT_DIR` is appended after the decision, as hcsshim's GCS does (so no policy names it).

Every container is checked before any starts: a refused one fails the group in one line naming the
container and the rule, and nothing has run (no key could have been released).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ..common.errors import PolicyDenied
from ..renderings.cce import capability_sets
from ..renderings.enforcer import (
    GuestRequests,
    PolicyEnforcer,
    create_container_request,
    emptydir_mount,
    resolv_conf_mount,
)
from ..renderings.layers import ImageInfo, ImageResolver
from .template import ContainerDefinition, GroupDefinition

#: What the platform puts into every container's environment besides the template's (ACI's defaults).
PLATFORM_ENV = (("TERM", "xterm"),)


@dataclass(frozen=True)
class ContainerPlan:
    """A container as the platform will create it, once the policy allowed it."""

    definition: ContainerDefinition
    image: ImageInfo
    container_id: str
    env: tuple[tuple[str, str], ...]
    uid: int
    gid: int
    working_dir: str
    #: per mount target: "rshared" or "rprivate"
    propagation: dict[str, str]


def _user(image: ImageInfo) -> tuple[int, int]:
    """The image's USER as numeric ids (the template cannot set a user: runAsUser is refused)."""
    user, _, group = (image.user or "0").partition(":")
    try:
        uid = int(user)
        gid = int(group) if group else uid
    except ValueError:
        raise PolicyDenied(f"image {image.reference}: USER {image.user!r} is not numeric; the simulator does not "
                           "read the image's /etc/passwd") from None
    return uid, gid


def policy_propagation(enforcer: PolicyEnforcer) -> dict[tuple[str, str], str]:
    """Per (container name, mount destination): the propagation the policy names for it.

    ACI's API has no mount propagation field: the platform picks it. The simulator takes it from the policy
    entry of the same container name (default rprivate); it cannot widen anything, since the same options
    are then checked against the same policy."""
    found: dict[tuple[str, str], str] = {}
    for entry in enforcer.evaluate("policy.containers") or []:
        for mount in entry.get("mounts") or []:
            options = mount.get("options") or []
            if "rshared" in options:
                found[(str(entry.get("name")), str(mount.get("destination")))] = "rshared"
    return found


def plan_container(group: GroupDefinition, container: ContainerDefinition, image: ImageInfo,
                   propagation: dict[tuple[str, str], str]) -> tuple[ContainerPlan, GuestRequests]:
    container_id = hashlib.sha256(f"{group.name}/{container.name}".encode()).hexdigest()
    env = list(container.env)
    names = {k for k, _ in env}
    env += [tuple(e.split("=", 1)) for e in image.env if "=" in e and e.split("=", 1)[0] not in names]
    names = {k for k, _ in env}
    env += [(k, v) for k, v in (*PLATFORM_ENV, ("HOSTNAME", container_id[:12])) if k not in names]
    uid, gid = _user(image)
    working_dir = image.working_dir or "/"
    mount_propagation = {m.path: propagation.get((container.name, m.path), "rprivate") for m in container.mounts}
    mounts = [emptydir_mount(m.path, m.volume, mount_propagation[m.path], "ro" if m.read_only else "rw")
              for m in container.mounts]
    mounts.append(resolv_conf_mount(container_id[:8]))
    capabilities = capability_sets(privileged=container.privileged,
                                   added=(f"CAP_{c.removeprefix('CAP_')}" for c in container.capabilities_add))
    create = create_container_request(
        container_id, command=container.command, env=[f"{k}={v}" for k, v in env], working_dir=working_dir,
        mounts=mounts, privileged=container.privileged, no_new_privileges=False, uid=uid, gid=gid,
        capabilities=capabilities)
    plan = ContainerPlan(container, image, container_id, tuple(env), uid, gid, working_dir, mount_propagation)
    return plan, GuestRequests(container_id=container_id, layers=image.layers, create=create)


def enforce_group(group: GroupDefinition, images: ImageResolver,
                  progress: Callable[[str], None] = lambda _line: None) -> list[ContainerPlan]:
    """Every container of `group` checked against its policy, in creation order; raises PolicyDenied naming
    the first refused container and why."""
    enforcer = PolicyEnforcer(group.policy)
    try:
        propagation = policy_propagation(enforcer)
        plans = []
        for container in group.all_containers:
            image = images.resolve(container.image)
            plan, requests = plan_container(group, container, image, propagation)
            try:
                requests.start(enforcer)
            except PolicyDenied as exc:
                raise PolicyDenied(f"the CCE policy refuses container {container.name}: {exc}") from None
            progress(f"policy allows {container.name} ({container.image})")
            plans.append(plan)
        return plans
    finally:
        enforcer.close()
