"""The ARM template of a confidential container group (`Microsoft.ContainerInstance/containerGroups`).

Rendered from the container model and the CCE policy; the template's `ccePolicy` is the base64 of the
exact policy text whose hash the parties' keys are bound to. Resource requests are checked against the
Confidential ACI limits at generation time, so a room that could never be scheduled is refused here.
"""

from __future__ import annotations

import json
from typing import Any

from ..common.containers import Container
from ..common.errors import ConfigError
from ..room.group import ContainerGroup
from ..room.registry import REGISTRY
from .cce import policy_base64

API_VERSION = "2023-05-01"
TEMPLATE_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
PARAMETERS_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
TEMPLATE_FILE = "cleanroom-arm-template.json"
PARAMETERS_FILE = "cleanroom-arm-template.parameters.json"

#: Confidential SKU limits per container group: ACI's "resource availability and quota limits" page gives
#: 4 vCPU and 16 GB of memory per confidential container group in general regions (larger sizes are a
#: regional preview we do not target; no GPU). ACI takes requests in 0.1 steps of at least 0.1.
MAX_GROUP_CPU = 4.0
MAX_GROUP_MEMORY_GB = 16.0
MIN_CPU = 0.1
MIN_MEMORY_GB = 0.1


def check_limits(group: ContainerGroup) -> None:
    problems = []
    for c in group.containers:
        if c.resources.cpu < MIN_CPU:
            problems.append(f"{c.name}: cpu {c.resources.cpu} is below the minimum of {MIN_CPU}")
        if c.resources.memory_gb < MIN_MEMORY_GB:
            problems.append(f"{c.name}: memory {c.resources.memory_gb} GB is below the minimum of {MIN_MEMORY_GB} GB")
    total = group.total_resources
    if total.cpu > MAX_GROUP_CPU:
        problems.append(f"the group requests {total.cpu} CPU in total (app {group.app.resources.cpu} + sidecars); "
                        f"Confidential ACI allows at most {MAX_GROUP_CPU:g}: lower application.resources.cpu")
    if total.memory_gb > MAX_GROUP_MEMORY_GB:
        problems.append(f"the group requests {total.memory_gb} GB of memory in total (app "
                        f"{group.app.resources.memory_gb} + sidecars); Confidential ACI allows at most "
                        f"{MAX_GROUP_MEMORY_GB:g} GB: lower application.resources.memory_gb")
    if problems:
        raise ConfigError("outside Confidential ACI limits: " + "; ".join(problems))


def _arm_string(value: str) -> str:
    # A string starting with "[" is an ARM template expression; "[[" is the literal "[".
    return "[" + value if value.startswith("[") else value


def _security_context(c: Container) -> dict[str, Any] | None:
    context: dict[str, Any] = {}
    if c.privileged:
        context["privileged"] = True
    if c.capabilities and not c.privileged:
        context["capabilities"] = {"add": [cap.removeprefix("CAP_") for cap in c.capabilities]}
    return context or None


def _requests(c: Container, group: ContainerGroup) -> dict[str, float]:
    """A container's resource requests. The app runs inside the container of the sidecar that runs containers
    (the launcher's podman): its CPU and memory are that container's too. ACI caps a container at its
    request when no limit is given, so without them the app's cgroup would be refused inside the
    launcher's (the local ACI simulator showed it), and the group would not reserve the app's share."""
    cpu, memory = c.resources.cpu, c.resources.memory_gb
    if c.name in {f"ccr-{s.name}" for s in REGISTRY if s.runs_containers}:
        cpu, memory = cpu + group.app.resources.cpu, memory + group.app.resources.memory_gb
    return {"cpu": round(cpu, 3), "memoryInGB": round(memory, 3)}


def _container(c: Container, *, init: bool, group: ContainerGroup) -> dict[str, Any]:
    props: dict[str, Any] = {
        "image": c.image,
        "command": [_arm_string(a) for a in c.command],
        "environmentVariables": [{"name": k, "value": _arm_string(v)} for k, v in c.env],
        "volumeMounts": [{"name": m.volume, "mountPath": m.target, "readOnly": m.read_only} for m in c.mounts],
    }
    if not init:
        props["resources"] = {"requests": _requests(c, group)}
        props["ports"] = [{"port": p.port, "protocol": p.protocol} for p in c.ports]
    context = _security_context(c)
    if context:
        props["securityContext"] = context
    return {"name": c.name, "properties": props}


def container_group_resource(group: ContainerGroup, policy: str) -> dict[str, Any]:
    """The `containerGroups` resource (the body ARM sends to the resource provider)."""
    check_limits(group)
    platform = group.platform_containers
    properties: dict[str, Any] = {
        "sku": "Confidential",
        "confidentialComputeProperties": {"ccePolicy": policy_base64(policy)},
        "initContainers": [_container(c, init=True, group=group) for c in platform if c.role == "init"],
        "containers": [_container(c, init=False, group=group) for c in platform if c.role != "init"],
        "volumes": [{"name": v, "emptyDir": {}} for v in group.volumes],
        "osType": "Linux",
        "restartPolicy": "Never",
    }
    public = group.public_ports
    if public:
        properties["ipAddress"] = {"type": "Public",
                                   "ports": [{"port": p.port, "protocol": p.protocol} for p in public]}
    resource: dict[str, Any] = {
        "type": "Microsoft.ContainerInstance/containerGroups",
        "apiVersion": API_VERSION,
        "name": "[parameters('containerGroupName')]",
        "location": "[parameters('location')]",
        "tags": {"ccr-cleanroom": group.name},
        "properties": properties,
    }
    if group.identities:
        resource["identity"] = {"type": "UserAssigned",
                                "userAssignedIdentities": {i: {} for i in group.identities}}
    return resource


def arm_template(group: ContainerGroup, policy: str) -> dict[str, Any]:
    return {
        "$schema": TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "containerGroupName": {"type": "string", "defaultValue": group.name,
                                   "metadata": {"description": "name of the clean room's container group"}},
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]",
                         "metadata": {"description": "a region that offers Confidential ACI"}},
        },
        "resources": [container_group_resource(group, policy)],
        "outputs": {
            "ipAddress": {"type": "string",
                          "value": "[reference(resourceId('Microsoft.ContainerInstance/containerGroups', "
                                   "parameters('containerGroupName'))).ipAddress.ip]"},
        } if group.public_ports else {},
    }


def arm_parameters(group: ContainerGroup) -> dict[str, Any]:
    return {"$schema": PARAMETERS_SCHEMA, "contentVersion": "1.0.0.0",
            "parameters": {"containerGroupName": {"value": group.name}}}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"
