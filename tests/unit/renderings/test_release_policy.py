from __future__ import annotations

import pytest

from sidecars.common.errors import ConfigError
from sidecars.renderings.cce import policy_hash, render_policy
from sidecars.renderings.release_policy import release_policy_for


def satisfied(policy: dict, claims: dict, issuer: str) -> bool:
    """Key Vault's evaluation of a release policy: some anyOf branch from the token's issuer whose
    allOf claims all equal (compared as strings)."""
    return any(branch["authority"] == issuer
               and all(str(claims.get(c["claim"])).lower() == c["equals"] for c in branch["allOf"])
               for branch in policy["anyOf"])


@pytest.fixture
def room_claims(job_group, job_images):
    return {
        "x-ms-attestation-type": "sevsnpvm",
        "x-ms-compliance-status": "azure-compliant-uvm",
        "x-ms-sevsnpvm-hostdata": policy_hash(render_policy(job_group, job_images)),
        "x-ms-sevsnpvm-is-debuggable": False,
    }


def test_release_policy_binds_the_key_to_this_room(job_spec, job_images, room_claims):
    policy = release_policy_for(job_spec, "publisher", images=job_images)
    assert policy["version"] == "1.0.0"
    assert [b["authority"] for b in policy["anyOf"]] == ["https://maa.example.test"]
    assert satisfied(policy, room_claims, "https://maa.example.test")


@pytest.mark.parametrize("change", [
    {"x-ms-sevsnpvm-hostdata": "00" * 32},
    {"x-ms-sevsnpvm-is-debuggable": True},
    {"x-ms-compliance-status": "not-compliant"},
    {"x-ms-attestation-type": "sgx"},
])
def test_another_room_or_a_debuggable_vm_does_not_get_the_key(job_spec, job_images, room_claims, change):
    policy = release_policy_for(job_spec, "publisher", images=job_images)
    assert not satisfied(policy, {**room_claims, **change}, "https://maa.example.test")


def test_a_token_from_another_attestation_service_does_not_get_the_key(job_spec, job_images, room_claims):
    policy = release_policy_for(job_spec, "partner", images=job_images)
    assert not satisfied(policy, room_claims, "https://attacker-maa.example.test")


def test_a_changed_app_changes_the_required_hostdata(job_spec, job_images):
    from sidecars.room.group import render_group

    from .conftest import images_for

    app = job_spec.application.model_copy(update={"command": ["python3", "/app/other.py"]})
    changed = job_spec.model_copy(update={"application": app})
    original = release_policy_for(job_spec, "consumer", images=job_images)
    other = release_policy_for(changed, "consumer", images=images_for(render_group(changed)))
    assert original["anyOf"][0]["allOf"] != other["anyOf"][0]["allOf"]


def test_party_without_keys_is_named(job_spec, job_images):
    with pytest.raises(ConfigError, match="'auditor' owns no datasource or datasink.*owners: consumer, partner"):
        release_policy_for(job_spec, "auditor", images=job_images)
