"""The simulator enforces the template's own CCE policy on every container, as the guest's GCS does."""

from __future__ import annotations

import base64

import pytest

from sidecars.aci.enforcement import enforce_group
from sidecars.aci.template import load_group
from sidecars.common.errors import PolicyDenied

from .conftest import container_properties, group_properties


def test_the_rendered_group_is_allowed_as_written(job_template, job_images):
    plans = enforce_group(load_group(job_template), job_images)
    assert [p.definition.name for p in plans][0] == "ccr-firewall"
    volumes = next(p for p in plans if p.definition.name == "ccr-volumes")
    # the one mount ACI's API cannot describe takes the policy's own propagation
    assert volumes.propagation == {"/run/ccr": "rprivate", "/mnt/remote": "rshared"}


@pytest.mark.parametrize("container, change", [
    ("ccr-skr", lambda p: p["environmentVariables"].append({"name": "CCR_DEBUG", "value": "1"})),
    ("ccr-skr", lambda p: p["environmentVariables"][0].update(value="governance")),
    ("ccr-launcher", lambda p: p["command"].append("--no-policy")),
    ("ccr-governance", lambda p: p["volumeMounts"].append({"name": "remotemounts", "mountPath": "/mnt/remote"})),
    ("ccr-governance", lambda p: p.update(securityContext={"privileged": True})),
    ("ccr-proxy", lambda p: p.update(image="localhost/ccr/ccr-runtime:0.1.0")),
    ("ccr-firewall", lambda p: p["command"].__setitem__(3, "skr")),
])
def test_an_altered_container_is_refused_naming_it(job_template, job_images, container, change):
    change(container_properties(job_template, container))
    with pytest.raises(PolicyDenied, match=f"refuses container {container}: ") as raised:
        enforce_group(load_group(job_template), job_images)
    assert "\n" not in str(raised.value)


def test_an_altered_policy_does_not_vouch_for_an_altered_container(job_template, job_images):
    """Editing the policy to allow the edit changes HOST_DATA: the group runs, but attests differently."""
    properties = group_properties(job_template)
    original = load_group(job_template).host_data
    policy = base64.b64decode(properties["confidentialComputeProperties"]["ccePolicy"]).decode()
    properties["confidentialComputeProperties"]["ccePolicy"] = base64.b64encode(
        policy.replace("allow_environment_variable_dropping := false", "allow_environment_variable_dropping := true")
        .encode()).decode()
    assert load_group(job_template).host_data != original
