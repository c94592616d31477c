"""A room on the mock platform says so in its MAA claims (`x-ms-compliance-status: ccr-mock-uvm`), and only
policies rendered for the local stand-ins accept that: real release policies and a CGS not started for the
stand-ins refuse it."""

from __future__ import annotations

import dataclasses

import pytest

from sidecars.attestation import AttestationError, MockSnpProvider, Trust, verify_evidence
from sidecars.attestation.verify import COMPLIANT_UVM, MOCK_UVM
from sidecars.common.errors import PolicyDenied
from sidecars.common.release_policy import ReleasePolicy, sevsnp_policy
from sidecars.emulators.cgs.verifier import attestation_verifier
from sidecars.keys.kek import KekRequest, describe
from sidecars.renderings.explain import MOCK_WARNING, explain
from sidecars.renderings.release_policy import release_policy
from sidecars.renderings.render import render
from sidecars.room.group import render_group
from sidecars.spec import load_spec
from tests.unit.renderings.conftest import VARIABLES, images_for

HOST_DATA = "4d" * 32
AUTHORITY = "https://maa.example.test"


def _claims(status: str) -> dict:
    return {"x-ms-attestation-type": "sevsnpvm", "x-ms-sevsnpvm-hostdata": HOST_DATA,
            "x-ms-compliance-status": status, "x-ms-sevsnpvm-is-debuggable": False}


def test_mock_evidence_is_ccr_mock_uvm_even_when_its_signer_is_trusted_as_if_microsofts(mock_platform):
    """Attack: a verifier configured to trust the mock's UVM signer among the real ones. The status says what
    signed the UVM, not what the verifier trusts: never azure-compliant-uvm."""
    evidence = MockSnpProvider(mock_platform).get_evidence(b"")
    as_if_real = Trust(amd_roots=Trust.default().amd_roots + (mock_platform.ark_cert,),
                       uvm_endorsers=(mock_platform.uvm_endorser, *Trust.default().uvm_endorsers))
    assert verify_evidence(evidence, as_if_real)["x-ms-compliance-status"] == MOCK_UVM
    assert verify_evidence(evidence, Trust.default().trusting_mock_platform(mock_platform.directory))[
        "x-ms-compliance-status"] == MOCK_UVM


def test_real_hardware_evidence_stays_azure_compliant(real_evidence, mock_platform):
    # trusting a mock platform as well changes nothing for Microsoft-endorsed evidence
    trust = Trust.default().trusting_mock_platform(mock_platform.directory)
    assert verify_evidence(real_evidence, trust)["x-ms-compliance-status"] == COMPLIANT_UVM


@pytest.mark.parametrize("document", [
    sevsnp_policy(AUTHORITY, HOST_DATA),
    release_policy([AUTHORITY], HOST_DATA),
])
def test_a_real_release_policy_refuses_a_mock_room(document):
    policy = ReleasePolicy.parse(document)
    policy.evaluate(AUTHORITY, _claims(COMPLIANT_UVM))
    with pytest.raises(PolicyDenied, match="x-ms-compliance-status"):
        policy.evaluate(AUTHORITY, _claims(MOCK_UVM))


@pytest.mark.parametrize("document", [
    sevsnp_policy(AUTHORITY, HOST_DATA, accept_mock_uvm=True),
    release_policy([AUTHORITY], HOST_DATA, accept_mock_uvm=True),
])
def test_a_policy_rendered_for_the_stand_ins_accepts_the_mock_and_nothing_looser(document):
    policy = ReleasePolicy.parse(document)
    policy.evaluate(AUTHORITY, _claims(COMPLIANT_UVM))
    policy.evaluate(AUTHORITY, _claims(MOCK_UVM))
    for wrong in ({**_claims(MOCK_UVM), "x-ms-sevsnpvm-hostdata": "00" * 32},
                  {**_claims(MOCK_UVM), "x-ms-sevsnpvm-is-debuggable": True},
                  _claims("some-other-status")):
        with pytest.raises(PolicyDenied):
            policy.evaluate(AUTHORITY, wrong)


def test_cgs_accepts_the_mock_uvm_only_when_started_for_the_stand_ins(mock_platform):
    combined = MockSnpProvider(mock_platform).get_evidence(b"").to_combined()
    assert attestation_verifier(mock_platform.directory)(combined)["x-ms-compliance-status"] == MOCK_UVM
    with pytest.raises(AttestationError):
        attestation_verifier(None)(combined)


def test_explain_and_create_kek_say_so_loudly(repo):
    spec = load_spec(repo / "examples/cleanroomhello-job/spec.yaml", variables=VARIABLES)
    rendering = render(spec, images_for(render_group(spec)))
    assert MOCK_WARNING not in explain(spec, rendering)
    text = explain(spec, rendering, mock_platform=True)
    assert text.startswith(MOCK_WARNING) and text.rstrip().endswith(MOCK_WARNING) and "ccr-mock-uvm" in text
    request = KekRequest("https://vault.example.test", "k", "RSA-HSM", 2048, AUTHORITY, HOST_DATA)
    assert not any("MOCK" in line for line in describe(request))
    mock_lines = [line for line in describe(dataclasses.replace(request, accept_mock_uvm=True))
                  if "MOCK" in line]
    assert len(mock_lines) == 1 and MOCK_UVM in mock_lines[0]
