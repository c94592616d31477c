"""The wire shapes evidence travels in, and malformed documents naming the field."""

from __future__ import annotations

import json

import pytest

from sidecars.attestation import Evidence, MaaRequest, load_evidence_document
from sidecars.common.errors import BadRequest


def test_caci_round_trip(real_evidence):
    assert Evidence.from_caci(json.loads(json.dumps(real_evidence.to_caci()))) == real_evidence


def test_combined_round_trip(real_evidence):
    combined = real_evidence.to_combined()
    assert set(combined) == {"evidence", "endorsements", "uvm_endorsements", "endorsed_tcb"}
    assert combined["endorsed_tcb"] == "db18000000000004"
    assert Evidence.from_combined(combined) == real_evidence


def test_maa_body_round_trip(real_maa_request, caci_dir):
    body = real_maa_request.to_body()
    assert MaaRequest.from_body(json.loads(json.dumps(body))) == real_maa_request
    original = json.loads((caci_dir / "maa-request.json").read_text())
    assert real_maa_request.runtime_data == (caci_dir / "public-key-jwks").read_bytes()
    assert real_maa_request.nonce == original["nonce"]


def test_both_test_vectors_carry_the_same_platform(real_evidence, real_maa_request):
    assert real_maa_request.evidence.vcek_chain_pem == real_evidence.vcek_chain_pem
    assert real_maa_request.evidence.uvm_endorsement == real_evidence.uvm_endorsement
    assert real_maa_request.evidence.report != real_evidence.report


def test_document_shapes_are_recognised(real_evidence, real_maa_request):
    assert load_evidence_document(real_evidence.to_caci()) == (real_evidence, None)
    assert load_evidence_document(real_evidence.to_combined()) == (real_evidence, None)
    evidence, request = load_evidence_document(real_maa_request.to_body())
    assert request == real_maa_request and evidence == real_maa_request.evidence


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.pop("report"), "report: field required"),
    (lambda b: b.update(report="!!!"), "report: not valid base64"),
    (lambda b: b.update(report="e30"), "report.SnpReport: field required"),
    (lambda b: b.pop("runtimeData"), "runtimeData: field required"),
    (lambda b: b["runtimeData"].pop("data"), "runtimeData.data: field required"),
    (lambda b: b["runtimeData"].update(dataType="XML"), "runtimeData.dataType"),
    (lambda b: b.update(initTimeData="x"), "initTimeData: expected an object"),
])
def test_malformed_maa_body_names_the_field(real_maa_request, mutate, field):
    body = real_maa_request.to_body()
    mutate(body)
    with pytest.raises(BadRequest, match=field.replace(".", r"\.")):
        MaaRequest.from_body(body)


def test_unrecognised_document():
    with pytest.raises(BadRequest, match="not a recognised evidence document"):
        load_evidence_document({"hello": 1})
