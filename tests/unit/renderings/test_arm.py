"""The ARM template loads into the official azure-mgmt-containerinstance models, strictly."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys

import jsonschema
import pytest
from azure.mgmt.containerinstance import models

from sidecars.common.deploymentspec import template_sha256
from sidecars.common.errors import ConfigError
from sidecars.renderings.arm import TEMPLATE_SCHEMA, arm_template, check_limits, container_group_resource
from sidecars.renderings.cce import policy_hash, render_policy
from sidecars.room.group import render_group

from .conftest import VARIABLES
from .strict_models import UnknownProperty, check_msrest

ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["$schema", "contentVersion", "resources"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"const": TEMPLATE_SCHEMA},
        "contentVersion": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$"},
        "parameters": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["type"],
            "properties": {"type": {"enum": ["string", "securestring", "int", "bool", "object", "secureObject",
                                             "array"]},
                           "defaultValue": {}, "metadata": {"type": "object"}},
            "additionalProperties": False}},
        "variables": {"type": "object"},
        "resources": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "apiVersion", "name"],
            "properties": {"type": {"type": "string", "pattern": r"^[A-Za-z.]+/[A-Za-z/]+$"},
                           "apiVersion": {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$"},
                           "name": {"type": "string"}, "location": {"type": "string"}}}},
        "outputs": {"type": "object"},
    },
}


@pytest.fixture
def template(job_group, job_images):
    return arm_template(job_group, render_policy(job_group, job_images))


def load_container_group(resource: dict) -> models.ContainerGroup:
    body = {k: v for k, v in resource.items() if k != "apiVersion"}
    check_msrest(models, models.ContainerGroup, body)
    group = models.ContainerGroup.deserialize(body)
    for obj in [group, *group.containers, *(group.init_containers or []), *(group.volumes or [])]:
        missing = [attr for attr, rule in type(obj)._validation.items()
                   if rule.get("required") and getattr(obj, attr) is None]
        assert not missing, f"{type(obj).__name__} lacks required {missing}"
    # The SDK types these as plain strings (extensible enums); the service accepts only the enum's values.
    enums = [(group.sku, models.ContainerGroupSku), (group.restart_policy, models.ContainerGroupRestartPolicy),
             (group.os_type, models.OperatingSystemTypes)]
    if group.ip_address:
        enums.append((group.ip_address.type, models.ContainerGroupIpAddressType))
        enums += [(p.protocol, models.ContainerGroupNetworkProtocol) for p in group.ip_address.ports]
    enums += [(p.protocol, models.ContainerNetworkProtocol) for c in group.containers for p in c.ports or []]
    if group.identity:
        enums.append((group.identity.type, models.ResourceIdentityType))
    for value, enum_type in enums:
        if value not in {member.value for member in enum_type}:
            raise UnknownProperty(f"{value!r} is not a {enum_type.__name__}")
    return group


def test_template_envelope_matches_the_schema(template):
    jsonschema.validate(template, ENVELOPE_SCHEMA)


def test_container_group_loads_into_the_official_models(template, job_group):
    resource = template["resources"][0]
    assert resource["type"] == "Microsoft.ContainerInstance/containerGroups"
    group = load_container_group(resource)
    assert group.sku == "Confidential"
    assert group.restart_policy == "Never" and group.os_type == "Linux"
    assert [c.name for c in group.init_containers] == ["ccr-firewall"]
    assert group.init_containers[0].security_context.privileged is True
    assert [c.name for c in group.containers] == [c.name for c in job_group.sidecars]
    assert {v.name for v in group.volumes} == {"remotemounts", "ccr-run"}
    volumes = next(c for c in group.containers if c.name == "ccr-volumes")
    assert volumes.security_context.privileged is True
    assert any(m.mount_path == "/mnt/remote" and not m.read_only for m in volumes.volume_mounts)
    assert group.ip_address is None, "a job room exposes nothing"


def test_cce_policy_in_the_template_is_the_policy_whose_hash_keys_are_bound_to(template, job_group, job_images):
    policy = render_policy(job_group, job_images)
    encoded = template["resources"][0]["properties"]["confidentialComputeProperties"]["ccePolicy"]
    assert base64.b64decode(encoded).decode() == policy
    assert policy_hash(base64.b64decode(encoded).decode()) == policy_hash(policy)


@pytest.mark.parametrize("where, wrong", [
    (("properties", "containers", 0, "properties"), ("volumeMounts", "volumeMount")),
    (("properties",), ("restartPolicy", "restartpolicy")),
    (("properties", "confidentialComputeProperties"), ("ccePolicy", "ccepolicy")),
    (("properties", "initContainers", 0, "properties", "securityContext"), ("privileged", "priviledged")),
])
def test_a_misspelled_property_fails_the_check(template, where, wrong):
    resource = copy.deepcopy(template["resources"][0])
    node = resource
    for step in where:
        node = node[step]
    right, misspelled = wrong
    node[misspelled] = node.pop(right)
    # The SDK alone would drop the key without a word; the strict check names it.
    models.ContainerGroup.deserialize({k: v for k, v in resource.items() if k != "apiVersion"})
    with pytest.raises(UnknownProperty, match=misspelled):
        load_container_group(resource)


def test_an_invalid_sku_fails_the_check(template):
    resource = copy.deepcopy(template["resources"][0])
    resource["properties"]["sku"] = "Confidentail"
    with pytest.raises(UnknownProperty, match="Confidentail"):
        load_container_group(resource)


def test_api_room_gets_a_public_ip_for_the_proxy_only(api_spec):
    from .conftest import images_for

    group = render_group(api_spec)
    template = arm_template(group, render_policy(group, images_for(group)))
    jsonschema.validate(template, ENVELOPE_SCHEMA)
    loaded = load_container_group(template["resources"][0])
    assert loaded.ip_address.type == "Public"
    assert [(p.port, p.protocol) for p in loaded.ip_address.ports] == [(15001, "TCP")]
    assert "ipAddress" in template["outputs"]


def test_managed_identity_is_attached(job_spec, job_images):
    identity = ("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
                "userAssignedIdentities/cleanroom")
    group = render_group(job_spec, identities=(identity,))
    resource = container_group_resource(group, render_policy(group, job_images))
    loaded = load_container_group(resource)
    assert loaded.identity.type == "UserAssigned" and identity in loaded.identity.user_assigned_identities


def test_requests_beyond_confidential_aci_limits_are_refused(job_spec):
    app = job_spec.application.model_copy(update={"resources": job_spec.application.resources.model_copy(
        update={"cpu": 3.5})})
    with pytest.raises(ConfigError, match="at most 4: lower application.resources.cpu"):
        check_limits(render_group(job_spec.model_copy(update={"application": app})))
    app = job_spec.application.model_copy(update={"resources": job_spec.application.resources.model_copy(
        update={"memory_gb": 16})})
    with pytest.raises(ConfigError, match="at most 16 GB"):
        check_limits(render_group(job_spec.model_copy(update={"application": app})))


def test_cli_refuses_an_oversized_room_in_one_line(tmp_path, repo, lock_file):
    spec = (repo / "examples/cleanroomhello-job/spec.yaml").read_text().replace("cpu: 0.5", "cpu: 8")
    path = tmp_path / "big.yaml"
    path.write_text(spec)
    args = [a for k, v in VARIABLES.items() for a in ("--var", f"{k}={v}")]
    done = subprocess.run([sys.executable, "-m", "sidecars", "spec", "render", "arm", str(path), *args,
                           "--layers", str(lock_file), "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "outside Confidential ACI limits" in done.stderr
    assert not (tmp_path / "out").exists()


def test_cli_writes_template_and_parameters(tmp_path, repo, lock_file):
    args = [a for k, v in VARIABLES.items() for a in ("--var", f"{k}={v}")]
    spec = str(repo / "examples/cleanroomhello-job/spec.yaml")
    done = subprocess.run([sys.executable, "-m", "sidecars", "spec", "render", "arm", spec, *args, "--layers",
                           str(lock_file), "-o", str(tmp_path)], capture_output=True, text=True, check=True)
    template = json.loads((tmp_path / "cleanroom-arm-template.json").read_text())
    parameters = json.loads((tmp_path / "cleanroom-arm-template.parameters.json").read_text())
    jsonschema.validate(template, ENVELOPE_SCHEMA)
    assert parameters["parameters"]["containerGroupName"]["value"] == "cleanroomhello-job"
    load_container_group(template["resources"][0])
    host_data = subprocess.run([sys.executable, "-m", "sidecars", "spec", "render", "policy-hash", spec, *args,
                                "--layers", str(lock_file)], capture_output=True, text=True, check=True).stdout.strip()
    assert f"HOST_DATA {host_data}" in done.stdout
    assert f"template sha256 {template_sha256(template)}" in done.stdout
    policy = base64.b64decode(template["resources"][0]["properties"]["confidentialComputeProperties"]["ccePolicy"])
    assert policy_hash(policy.decode()) == host_data


def test_the_launchers_request_reserves_the_apps_resources(template, job_group):
    """The app runs in the launcher's container (its podman): ACI caps a container at its request, so the
    launcher's request must hold the app's CPU and memory, or the app's cgroup is refused inside it."""
    containers = {c["name"]: c["properties"] for c in template["resources"][0]["properties"]["containers"]}
    launcher, app = job_group.container("ccr-launcher").resources, job_group.app.resources
    assert containers["ccr-launcher"]["resources"]["requests"] == {
        "cpu": round(launcher.cpu + app.cpu, 3), "memoryInGB": round(launcher.memory_gb + app.memory_gb, 3)}
    assert containers["ccr-skr"]["resources"]["requests"]["cpu"] == job_group.container("ccr-skr").resources.cpu
