"""Evaluate a CCE policy the way the confidential guest does, with the real OPA engine.

The guest's GCS asks the policy at each enforcement point: `mount_device` for every layer's dm-verity
device, `mount_overlay` for the container's root file system, then `create_container` with the OCI
process it is about to start. `PolicyEnforcer` keeps the enforcement state (mounted devices, candidate
containers per container id, started containers) and applies the `metadata` updates each decision
returns. `GuestRequests` builds the inputs the GCS sends for a container of our model, so `ccr room up` and
the tests can replay a group's start-up against its policy.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..common.containers import Container
from ..common.errors import PolicyDenied
from ..common.rego import RegoEngine
from .cce import container_capabilities, effective_working_dir
from .layers import ImageInfo

SANDBOX_DIR = "/run/gcs/c/sandbox"
LAYER_MOUNT_REGEX = "/run/layers/p[0-9]+-[0-9]+-[0-9]+"


def framework_source() -> str:
    return resources.files("sidecars.renderings").joinpath("framework.rego").read_text()


@dataclass
class Decision:
    allowed: bool
    result: dict[str, Any]
    errors: list[str] = field(default_factory=list)


class PolicyEnforcer:
    def __init__(self, policy: str):
        self._engine = RegoEngine().add_policy("framework.rego", framework_source()).add_policy("policy.rego", policy)
        self.metadata: dict[str, dict[str, Any]] = {}

    def decide(self, rule: str, request: dict[str, Any]) -> Decision:
        query = dict(request, rule=rule, name=rule, metadata=copy.deepcopy(self.metadata))
        result = self._engine.evaluate(f"policy.{rule}", query) or {"allowed": False}
        if not result.get("allowed"):
            reason = self._engine.evaluate("policy.reason", query) or {}
            return Decision(False, result, sorted(reason.get("errors") or []))
        for update in result.get("metadata") or []:
            self._apply(update)
        return Decision(True, result)

    def evaluate(self, document: str) -> Any:
        """A document of the policy itself (e.g. `policy.containers`), None when undefined."""
        return self._engine.evaluate(document, {})

    def enforce(self, rule: str, request: dict[str, Any]) -> Decision:
        decision = self.decide(rule, request)
        if not decision.allowed:
            raise PolicyDenied(f"{rule} denied: {', '.join(decision.errors) or 'no rule allows it'}")
        return decision

    def _apply(self, update: dict[str, Any]) -> None:
        table = self.metadata.setdefault(update["name"], {})
        if update["action"] in ("add", "update"):
            table[update["key"]] = update["value"]
        elif update["action"] == "remove":
            table.pop(update["key"], None)

    def close(self) -> None:
        self._engine.close()


@dataclass
class GuestRequests:
    """The enforcement-point inputs for starting one container, as the GCS builds them."""

    container_id: str
    layers: tuple[str, ...]
    create: dict[str, Any]

    def layer_targets(self) -> list[str]:
        scsi = int(hashlib.sha256(self.container_id.encode()).hexdigest()[:6], 16)
        return [f"/run/layers/p0-{scsi}-{i}" for i in range(len(self.layers))]

    def start(self, enforcer: PolicyEnforcer) -> Decision:
        targets = self.layer_targets()
        for target, layer in zip(targets, self.layers, strict=True):
            enforcer.enforce("mount_device", {"target": target, "deviceHash": layer,
                                              "mountPathRegex": LAYER_MOUNT_REGEX})
        enforcer.enforce("mount_overlay", {"containerID": self.container_id, "layerPaths": targets[::-1],
                                           "target": f"/run/gcs/c/{self.container_id}/rootfs"})
        return enforcer.enforce("create_container", self.create)

    @classmethod
    def for_container(cls, container: Container, image: ImageInfo, container_id: str) -> GuestRequests:
        env = [f"{k}={v}" for k, v in container.env] + [e for e in image.env
                                                      if e.split("=", 1)[0] not in container.env_dict]
        env.append(f"HOSTNAME={container_id[:12]}")
        mounts = [emptydir_mount(m.target, m.volume, "rshared" if m.propagation == "shared" else "rprivate", m.mode)
                  for m in container.mounts]
        if container.started_by == "platform":
            mounts.append(resolv_conf_mount("x"))
        create = create_container_request(
            container_id, command=container.command, env=env, working_dir=effective_working_dir(container, image),
            mounts=mounts, privileged=container.privileged, no_new_privileges=container.no_new_privileges,
            uid=container.user.uid, gid=container.user.gid, capabilities=container_capabilities(container))
        return cls(container_id=container_id, layers=image.layers, create=create)


def emptydir_mount(destination: str, volume: str, propagation: str, mode: str) -> dict[str, Any]:
    """An emptyDir volume's bind mount as the GCS describes it (propagation: rshared or rprivate)."""
    return {"destination": destination, "source": f"{SANDBOX_DIR}/tmp/atlas/emptydir/{volume}", "type": "bind",
            "options": ["rbind", propagation, mode]}


def resolv_conf_mount(name: str) -> dict[str, Any]:
    """The resolv.conf the platform binds into every container it starts."""
    return {"destination": "/etc/resolv.conf", "source": f"{SANDBOX_DIR}/tmp/atlas/resolvconf/{name}",
            "type": "bind", "options": ["rbind", "rshared", "rw"]}


def create_container_request(container_id: str, *, command: Sequence[str], env: Sequence[str], working_dir: str,
                             mounts: list[dict[str, Any]], privileged: bool, no_new_privileges: bool, uid: int,
                             gid: int, capabilities: dict[str, list[str]]) -> dict[str, Any]:
    """The input the GCS sends to `create_container` for one container's OCI process."""
    return {
        "containerID": container_id,
        "argList": list(command),
        "envList": list(env),
        "workingDir": working_dir,
        "sandboxDir": SANDBOX_DIR,
        "hugePagesDir": "/run/gcs/c/hugepages",
        "mounts": mounts,
        "privileged": privileged,
        "noNewPrivileges": no_new_privileges,
        "user": {"id": str(uid), "name": "root" if uid == 0 else ""},
        "groups": [{"id": str(gid), "name": ""}],
        "umask": "0022",
        "capabilities": capabilities,
        "seccompProfileSHA256": "",
        "devices": [],
        "isSandboxContainer": False,
    }
