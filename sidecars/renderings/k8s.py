"""A pod for AKS confidential virtual nodes (virtual-kubelet on Confidential ACI).

The same group as the ARM template: init container for the firewall, the sidecars, emptyDir volumes,
the CCE policy as the virtual node's `ccepolicy` annotation (base64), scheduled onto the virtual node.
"""

from __future__ import annotations

from typing import Any

from ..common.containers import Container
from ..room.group import ContainerGroup
from .arm import check_limits
from .cce import policy_base64

CCE_POLICY_ANNOTATION = "microsoft.containerinstance.virtualnode.ccepolicy"


def pod_container(c: Container, *, init: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": c.name,
        "image": c.image,
        "command": list(c.command),
        "env": [{"name": k, "value": v} for k, v in c.env],
        "volumeMounts": [{"name": m.volume, "mountPath": m.target, "readOnly": m.read_only,
                          **({"mountPropagation": "Bidirectional"} if m.propagation == "shared" else {})}
                         for m in c.mounts],
        "securityContext": {"privileged": c.privileged,
                            **({"capabilities": {"add": [x.removeprefix("CAP_") for x in c.capabilities]}}
                               if c.capabilities else {})},
    }
    if not init:
        quantity = {"cpu": f"{int(c.resources.cpu * 1000)}m", "memory": f"{int(c.resources.memory_gb * 1024)}Mi"}
        spec["resources"] = {"requests": quantity, "limits": quantity}
        spec["ports"] = [{"containerPort": p.port, "protocol": p.protocol} for p in c.ports]
    return spec


def pod_manifest(group: ContainerGroup, policy: str) -> dict[str, Any]:
    check_limits(group)
    platform = group.platform_containers
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": group.name, "labels": {"ccr-cleanroom": group.name},
                     "annotations": {CCE_POLICY_ANNOTATION: policy_base64(policy)}},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [pod_container(c, init=True) for c in platform if c.role == "init"],
            "containers": [pod_container(c, init=False) for c in platform if c.role != "init"],
            "volumes": [{"name": v, "emptyDir": {}} for v in group.volumes],
            "nodeSelector": {"kubernetes.io/role": "agent", "type": "virtual-kubelet"},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
