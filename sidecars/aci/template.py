"""The container group an ARM template deploys, read as the ACI resource provider would read it.

A template is hostile input: it is read bounded (sidecars.common.untrusted), its few template expressions
are evaluated (`[parameters('NAME')]`, `[resourceGroup().location]`, and `[[`, the escaped `[`), and its
`Microsoft.ContainerInstance/containerGroups` resource is loaded into the official
`azure-mgmt-containerinstance` models. Anything the simulator could not run faithfully (a volume kind
other than emptyDir, a probe, a secure value, a GPU, run-as user, ...) is refused in one line, so a
group that starts here started exactly as written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.mgmt.containerinstance import models as container_models
from azure.mgmt.containerinstance._serialization import DeserializationError
from azure.mgmt.containerinstance.models import ContainerGroup

from ..common.deploymentspec import MAX_TEMPLATE_BYTES, template_sha256
from ..common.errors import ConfigError
from ..common.untrusted import DocumentLimits, UntrustedInputError, check_tree, load_json, read_bounded

__all__ = ["NAME_PATTERN", "ContainerDefinition", "GroupDefinition", "load_group", "load_group_files",
           "template_sha256"]

RESOURCE_TYPE = "Microsoft.ContainerInstance/containerGroups"
#: What CGS accepts as a deployment spec is what the simulator reads (the template's hash is what is governed).
TEMPLATE_LIMITS = DocumentLimits(max_bytes=MAX_TEMPLATE_BYTES, max_chars=MAX_TEMPLATE_BYTES)
#: Where the simulated location comes from when the template asks for `resourceGroup().location`.
SIMULATED_LOCATION = "local-simulator"
NAME_PATTERN = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
CONTAINER_NAME_PATTERN = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_PARAMETER = re.compile(r"\[parameters\('([A-Za-z0-9_]+)'\)\]")


@dataclass(frozen=True)
class VolumeMount:
    volume: str
    path: str
    read_only: bool


@dataclass(frozen=True)
class ContainerDefinition:
    """One container of the group, exactly as the template states it."""

    name: str
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    mounts: tuple[VolumeMount, ...]
    ports: tuple[int, ...]
    privileged: bool
    capabilities_add: tuple[str, ...]
    cpu: float | None
    memory_gb: float | None
    init: bool


@dataclass(frozen=True)
class GroupDefinition:
    name: str
    location: str
    cce_policy_base64: str
    init_containers: tuple[ContainerDefinition, ...]
    containers: tuple[ContainerDefinition, ...]
    volumes: tuple[str, ...]
    #: the whole template as given (before expressions were evaluated): what governance accepted
    template: dict[str, Any]

    @property
    def policy(self) -> str:
        return base64.b64decode(self.cce_policy_base64).decode()

    @property
    def host_data(self) -> str:
        """HOST_DATA as C-ACI computes it: sha256 of the policy the template carries (base64-decoded)."""
        return hashlib.sha256(base64.b64decode(self.cce_policy_base64)).hexdigest()

    @property
    def all_containers(self) -> tuple[ContainerDefinition, ...]:
        return self.init_containers + self.containers


def read_json_document(path: Path, what: str) -> dict[str, Any]:
    try:
        data = load_json(read_bounded(path, TEMPLATE_LIMITS), TEMPLATE_LIMITS)
    except UntrustedInputError as exc:
        raise ConfigError(f"{what} {path} {exc}") from None
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object")
    return data


def _parameter_values(template: dict[str, Any], parameters: dict[str, Any] | None) -> dict[str, Any]:
    declared = template.get("parameters") or {}
    if not isinstance(declared, dict):
        raise ConfigError("template: `parameters` must be an object")
    given = (parameters or {}).get("parameters") or {}
    if not isinstance(given, dict):
        raise ConfigError("parameters file: `parameters` must be an object")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"parameters file names parameters the template does not declare: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, declaration in declared.items():
        if not isinstance(declaration, dict):
            raise ConfigError(f"template: parameter {name!r} must be an object")
        entry = given.get(name)
        if entry is not None:
            if not isinstance(entry, dict) or "value" not in entry:
                raise ConfigError(f"parameters file: {name!r} must be {{\"value\": ...}} (a Key Vault reference "
                                  "cannot be simulated)")
            values[name] = entry["value"]
        elif "defaultValue" in declaration:
            values[name] = declaration["defaultValue"]
        else:
            raise ConfigError(f"template parameter {name!r} has no value: pass it in --parameters FILE")
    # A default may itself be an expression (`[resourceGroup().location]`); a parameter naming another
    # parameter is not something our templates do, and is refused below as an unsupported expression.
    return {name: _evaluate(value, {}, f"parameter {name}") for name, value in values.items()}


def _evaluate(value: Any, parameters: dict[str, Any], where: str) -> Any:
    """The value with its template expressions evaluated (only the ones our templates use)."""
    if isinstance(value, dict):
        return {k: _evaluate(v, parameters, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_evaluate(v, parameters, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or not value.startswith("["):
        return value
    if value.startswith("[["):
        return value[1:]
    if value == "[resourceGroup().location]":
        return SIMULATED_LOCATION
    match = _PARAMETER.fullmatch(value)
    if match:
        if match.group(1) not in parameters:
            raise ConfigError(f"template {where}: parameter {match.group(1)!r} is not declared")
        return parameters[match.group(1)]
    raise ConfigError(f"template {where}: the expression {value[:80]!r} cannot be simulated (only "
                      "[parameters('NAME')] and [resourceGroup().location] are evaluated)")


def _container_group_resource(template: dict[str, Any]) -> dict[str, Any]:
    resources = template.get("resources")
    if not isinstance(resources, list):
        raise ConfigError("template: `resources` must be a list")
    groups = [r for r in resources if isinstance(r, dict) and r.get("type") == RESOURCE_TYPE]
    others = [str(r.get("type")) if isinstance(r, dict) else type(r).__name__ for r in resources
              if not (isinstance(r, dict) and r.get("type") == RESOURCE_TYPE)]
    if others:
        raise ConfigError(f"template: resources other than {RESOURCE_TYPE} cannot be simulated: {', '.join(others)}")
    if len(groups) != 1:
        raise ConfigError(f"template: expected exactly one {RESOURCE_TYPE} resource, found {len(groups)}")
    return groups[0]


def _unknown_field(raw: Any, model_class: type, where: str) -> str | None:
    """The first key of `raw` the SDK model has no field for (the SDK drops those silently, so a template
    could say something the simulator would then not do)."""
    if not isinstance(raw, dict):
        return None
    tree: dict[str, Any] = {}
    for entry in model_class._attribute_map.values():  # keys like "properties.containers" (flattened)
        *parents, leaf = entry["key"].replace("\\.", "\0").split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent.replace("\0", "."), {})
        node[leaf.replace("\0", ".")] = entry["type"]

    def walk(value: Any, node: dict[str, Any], path: str) -> str | None:
        if not isinstance(value, dict):
            return None
        for key, item in value.items():
            if key not in node:
                return f"{path}.{key}"
            child = node[key]
            if isinstance(child, dict):
                found = walk(item, child, f"{path}.{key}")
            else:
                found = _unknown_in_type(item, child, f"{path}.{key}")
            if found:
                return found
        return None

    return walk(raw, tree, where)


def _unknown_in_type(value: Any, type_name: str, where: str) -> str | None:
    if type_name.startswith("[") and isinstance(value, list):
        for index, item in enumerate(value):
            found = _unknown_in_type(item, type_name[1:-1], f"{where}[{index}]")
            if found:
                return found
        return None
    model_class = getattr(container_models, type_name, None)
    if isinstance(model_class, type) and hasattr(model_class, "_attribute_map") and type_name != "object":
        return _unknown_field(value, model_class, where)
    return None


def _missing_required(model: Any, where: str) -> str | None:
    """The first required field (per the SDK model's own `_validation` table) the template leaves out;
    unknown keys land in `additional_properties`, which the simulator refuses too."""
    if isinstance(model, list):
        for index, item in enumerate(model):
            found = _missing_required(item, f"{where}[{index}]")
            if found:
                return found
        return None
    if not hasattr(model, "_attribute_map"):
        return None
    if getattr(model, "additional_properties", None):
        return f"{where}: unknown field {sorted(model.additional_properties)[0]!r}"
    for attribute, rules in getattr(model, "_validation", {}).items():
        if rules.get("required") and getattr(model, attribute, None) is None:
            return f"{where}.{model._attribute_map[attribute]['key'].rsplit('.', 1)[-1]} is required"
    for attribute, entry in model._attribute_map.items():
        found = _missing_required(getattr(model, attribute, None), f"{where}.{entry['key'].rsplit('.', 1)[-1]}")
        if found:
            return found
    return None


def _refuse_unsupported(model: ContainerGroup) -> None:
    """One line for the first feature the simulator cannot run as the platform would."""
    problems = []
    if (model.sku or "").lower() != "confidential":
        problems.append("sku must be Confidential (the simulator runs confidential groups only)")
    if not model.confidential_compute_properties or not model.confidential_compute_properties.cce_policy:
        problems.append("confidentialComputeProperties.ccePolicy is missing (a confidential group without a "
                        "policy would run anything)")
    if (model.os_type or "Linux") != "Linux":
        problems.append(f"osType {model.os_type} (only Linux)")
    if model.restart_policy not in (None, "Never"):
        problems.append(f"restartPolicy {model.restart_policy} (only Never)")
    for field, label in ((model.subnet_ids, "subnetIds"), (model.dns_config, "dnsConfig"),
                         (model.extensions, "extensions"), (model.diagnostics, "diagnostics"),
                         (model.encryption_properties, "encryptionProperties")):
        if field:
            problems.append(f"{label} (not simulated)")
    for volume in model.volumes or []:
        if volume.empty_dir is None or volume.azure_file or volume.secret or volume.git_repo:
            problems.append(f"volume {volume.name}: only emptyDir volumes are simulated")
    for container in [*(model.init_containers or []), *(model.containers or [])]:
        where = f"container {container.name}"
        for probe, label in (("liveness_probe", "livenessProbe"), ("readiness_probe", "readinessProbe")):
            if getattr(container, probe, None):
                problems.append(f"{where}: {label} is not simulated")
        for variable in container.environment_variables or []:
            if variable.secure_value is not None:
                problems.append(f"{where}: environment variable {variable.name} is a secureValue (not simulated)")
        resources = getattr(container, "resources", None)
        if resources is not None and (resources.requests.gpu or (resources.limits and resources.limits.gpu)):
            problems.append(f"{where}: GPU resources cannot be simulated")
        context = container.security_context
        if context is not None:
            if context.run_as_user is not None or context.run_as_group is not None:
                problems.append(f"{where}: securityContext.runAsUser/runAsGroup is not simulated")
            if context.seccomp_profile:
                problems.append(f"{where}: securityContext.seccompProfile is not simulated")
            if context.allow_privilege_escalation is not None:
                problems.append(f"{where}: securityContext.allowPrivilegeEscalation is not simulated")
            if context.capabilities is not None and context.capabilities.drop:
                problems.append(f"{where}: securityContext.capabilities.drop is not simulated")
    if problems:
        raise ConfigError("template cannot be simulated faithfully: " + "; ".join(problems))


def _container(container: Any, *, init: bool, volumes: set[str]) -> ContainerDefinition:
    name = container.name
    if not CONTAINER_NAME_PATTERN.fullmatch(name or ""):
        raise ConfigError(f"template: container name {name!r} is not a valid ACI container name")
    env = []
    for variable in container.environment_variables or []:
        if not ENV_NAME_PATTERN.fullmatch(variable.name or "") or "\0" in (variable.value or ""):
            raise ConfigError(f"template: container {name}: invalid environment variable {variable.name!r}")
        env.append((variable.name, variable.value or ""))
    if len({k for k, _ in env}) != len(env):
        raise ConfigError(f"template: container {name} sets an environment variable twice")
    mounts = []
    for mount in container.volume_mounts or []:
        if mount.name not in volumes:
            raise ConfigError(f"template: container {name} mounts volume {mount.name!r}, which the group does not "
                              "declare")
        if not mount.mount_path.startswith("/") or ":" in mount.mount_path or ",," in mount.mount_path:
            raise ConfigError(f"template: container {name}: mountPath {mount.mount_path!r} must be an absolute path")
        mounts.append(VolumeMount(mount.name, mount.mount_path, bool(mount.read_only)))
    if not container.image or any(c.isspace() for c in container.image):
        raise ConfigError(f"template: container {name}: invalid image {container.image!r}")
    context = container.security_context
    caps = tuple(context.capabilities.add or ()) if context is not None and context.capabilities else ()
    if any(not re.fullmatch(r"[A-Z_]+", c) for c in caps):
        raise ConfigError(f"template: container {name}: invalid capability in {list(caps)}")
    resources = getattr(container, "resources", None)
    requests = resources.requests if resources is not None else None
    return ContainerDefinition(
        name=name, image=container.image, command=tuple(container.command or ()), env=tuple(env),
        mounts=tuple(mounts), ports=tuple(p.port for p in getattr(container, "ports", None) or []),
        privileged=bool(context is not None and context.privileged), capabilities_add=caps,
        cpu=requests.cpu if requests else None, memory_gb=requests.memory_in_gb if requests else None,
        init=init)


def load_group(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> GroupDefinition:
    """The group the template deploys, checked; every refusal is one ConfigError line."""
    try:
        check_tree(template, TEMPLATE_LIMITS)
    except UntrustedInputError as exc:
        raise ConfigError(f"template {exc}") from None
    values = _parameter_values(template, parameters)
    resource = _evaluate(_container_group_resource(template), values, "resources[0]")
    name = resource.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"template: container group name {name!r} is not a valid ACI name (lowercase letters, "
                          "digits and '-', at most 63)")
    if not isinstance(resource.get("properties"), dict):
        raise ConfigError("template: the container group has no `properties`")
    try:
        # `apiVersion` belongs to ARM's envelope, not to the resource provider's body.
        model = ContainerGroup.deserialize({k: v for k, v in resource.items() if k != "apiVersion"})
    except (DeserializationError, AttributeError, TypeError, ValueError) as exc:
        raise ConfigError(f"template: the container group does not match the ACI model: "
                          f"{str(exc).splitlines()[0][:300]}") from None
    unknown = _unknown_field({k: v for k, v in resource.items() if k != "apiVersion"}, ContainerGroup, "the group")
    if unknown:
        raise ConfigError(f"template: {unknown} is not a field of the ACI container group model (nothing the "
                          "simulator does not know is run)")
    missing = _missing_required(model, "the group")
    if missing:
        raise ConfigError(f"template: the container group does not match the ACI model: {missing}")
    _refuse_unsupported(model)
    policy = model.confidential_compute_properties.cce_policy
    try:
        base64.b64decode(policy, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigError("template: ccePolicy is not base64 of UTF-8 Rego text") from None
    volumes = {v.name for v in model.volumes or []}
    init = tuple(_container(c, init=True, volumes=volumes) for c in model.init_containers or [])
    containers = tuple(_container(c, init=False, volumes=volumes) for c in model.containers or [])
    if not containers:
        raise ConfigError("template: the container group has no containers")
    names = [c.name for c in init + containers]
    if len(set(names)) != len(names):
        raise ConfigError("template: two containers share a name")
    return GroupDefinition(name=name, location=str(model.location or SIMULATED_LOCATION), cce_policy_base64=policy,
                           init_containers=init, containers=containers, volumes=tuple(sorted(volumes)),
                           template=template)


def load_group_files(template_path: Path, parameters_path: Path | None = None) -> GroupDefinition:
    template = read_json_document(template_path, "template")
    parameters = read_json_document(parameters_path, "parameters file") if parameters_path else None
    return load_group(template, parameters)
