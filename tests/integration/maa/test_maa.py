"""The MAA stand-in over HTTPS: the real request gets a token with the expected claims, verifiable with
the keys MAA publishes; mock evidence only when trusted; tampering gets MAA's error."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json

import jwt
import pytest

from sidecars.attestation import MaaRequest, MockSnpProvider
from sidecars.attestation.maa_client import attest_sev_snp, report_data_for, verify_token
from sidecars.common.errors import RemoteServiceError

ATTEST = "/attest/SevSnpVm?api-version=2022-08-01"
HOST_DATA = "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20"
MEASUREMENT = ("d0c9e2be22046e60779be88868cff64c2aa22047c15d3127ba495cee3fbc2854"
               "c5633f9da2096e6c64ae2b69bbff8082")


def _post(server, body, path=ATTEST):
    with server.client() as client:
        return client.post(path, json=body)


def _verified_claims(server, token):
    """Verify as a relying party: key from /certs (through the jku the header names), RS256, iss."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["jku"] == f"{server.url}/certs"
    with server.client() as client:
        jwks = client.get("/certs").json()
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert key["x5c"] and key["kty"] == "RSA"
    return jwt.decode(token, jwt.PyJWK(key, algorithm="RS256"), algorithms=["RS256"], issuer=server.url)


def test_real_request_gets_a_token_with_the_expected_claims(maa, real_body, caci_dir):
    response = _post(maa, real_body)
    assert response.status_code == 200, response.text
    claims = _verified_claims(maa, response.json()["token"])
    assert claims["x-ms-attestation-type"] == "sevsnpvm"
    assert claims["x-ms-compliance-status"] == "azure-compliant-uvm"
    assert claims["x-ms-sevsnpvm-hostdata"] == HOST_DATA
    assert claims["x-ms-sevsnpvm-launchmeasurement"] == MEASUREMENT
    runtime = (caci_dir / "public-key-jwks").read_bytes()
    assert claims["x-ms-sevsnpvm-reportdata"] == hashlib.sha256(runtime).hexdigest() + "00" * 32
    assert claims["x-ms-runtime"] == json.loads(runtime)
    assert claims["x-ms-sevsnpvm-is-debuggable"] is False
    assert claims["x-ms-sevsnpvm-vmpl"] == 0 and claims["x-ms-sevsnpvm-guestsvn"] == 2
    assert (claims["x-ms-sevsnpvm-bootloader-svn"], claims["x-ms-sevsnpvm-tee-svn"],
            claims["x-ms-sevsnpvm-snpfw-svn"], claims["x-ms-sevsnpvm-microcode-svn"]) == (4, 0, 24, 219)
    assert claims["iss"] == maa.url and claims["nbf"] <= claims["iat"] < claims["exp"]
    assert claims["x-ms-ver"] == "1.0" and claims["x-ms-policy-hash"]


def test_openid_configuration_and_client_side_verification(maa, real_request):
    with maa.client() as client:
        metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["issuer"] == maa.url and metadata["jwks_uri"] == f"{maa.url}/certs"
    token = attest_sev_snp(maa.url, real_request.evidence, real_request.runtime_data, verify=maa.ca_file)
    assert verify_token(token, maa.url, verify=maa.ca_file)["x-ms-sevsnpvm-hostdata"] == HOST_DATA


def test_forged_token_is_rejected_by_the_client_check(maa, real_request):
    token = attest_sev_snp(maa.url, real_request.evidence, real_request.runtime_data, verify=maa.ca_file)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["x-ms-sevsnpvm-hostdata"] = "00" * 32
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify_token(f"{header}.{forged_payload}.{signature}", maa.url, verify=maa.ca_file)


def test_mock_evidence_is_refused_unless_trusted(maa, maa_trusting_mock, mock_platform):
    runtime = json.dumps({"keys": []}).encode()
    policy_hash = hashlib.sha256(b"policy").digest()
    evidence = MockSnpProvider(mock_platform, host_data=policy_hash).get_evidence(report_data_for(runtime))
    with pytest.raises(RemoteServiceError, match="unknown certificate chain") as refused:
        attest_sev_snp(maa.url, evidence, runtime, verify=maa.ca_file)
    assert refused.value.status == 401
    token = attest_sev_snp(maa_trusting_mock.url, evidence, runtime, verify=maa_trusting_mock.ca_file)
    claims = _verified_claims(maa_trusting_mock, token)
    assert claims["x-ms-sevsnpvm-hostdata"] == policy_hash.hex()
    assert claims["x-ms-compliance-status"] == "ccr-mock-uvm"
    assert claims["x-ms-runtime"] == {"keys": []}


def test_debuggable_mock_report_says_so(maa_trusting_mock, mock_platform):
    runtime = b'{"keys": []}'
    evidence = MockSnpProvider(mock_platform, debug=True).get_evidence(report_data_for(runtime))
    token = attest_sev_snp(maa_trusting_mock.url, evidence, runtime, verify=maa_trusting_mock.ca_file)
    assert _verified_claims(maa_trusting_mock, token)["x-ms-sevsnpvm-is-debuggable"] is True


def _error(response, status, code, message):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]


@pytest.mark.parametrize("offset", [0x0C0, 0x2A0, 0x400])
def test_tampered_report_is_refused(maa, real_request, offset):
    report = bytearray(real_request.evidence.report)
    report[offset] ^= 1
    evidence = dataclasses.replace(real_request.evidence, report=bytes(report))
    body = dataclasses.replace(real_request, evidence=evidence).to_body()
    expected = "reserved bytes" if offset >= 0x330 else "bad report signature"
    _error(_post(maa, body), 401, "AttestationFailed", expected)


def test_binding_mismatch_is_refused(maa, real_request):
    body = dataclasses.replace(real_request, runtime_data=b'{"keys": []}').to_body()
    _error(_post(maa, body), 401, "AttestationFailed", "runtime data binding mismatch")


def test_tampered_uvm_endorsement_is_refused(maa, real_request):
    cose = bytearray(real_request.evidence.uvm_endorsement)
    cose[-1] ^= 1
    evidence = dataclasses.replace(real_request.evidence, uvm_endorsement=bytes(cose))
    body = dataclasses.replace(real_request, evidence=evidence).to_body()
    _error(_post(maa, body), 401, "AttestationFailed", "UVM endorsement signature does not verify")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b.pop("report"), "report: field required"),
    (lambda b: b.pop("runtimeData"), "runtimeData: field required"),
    (lambda b: b["runtimeData"].update(data="***"), "runtimeData.data: not valid base64"),
    (lambda b: b.update(report="bm90IGpzb24"), "report: not base64url-encoded JSON"),
])
def test_malformed_body_names_the_field(maa, real_body, mutate, message):
    body = copy.deepcopy(real_body)
    mutate(body)
    _error(_post(maa, body), 400, "InvalidParameter", message)


def test_not_json_and_missing_api_version(maa):
    with maa.client() as client:
        _error(client.post(ATTEST, content=b"{not json"), 400, "InvalidParameter", "not a JSON document")
        _error(client.post("/attest/SevSnpVm", json={}), 400, "InvalidParameter", "api-version")
        _error(client.post("/attest/SevSnpVm?api-version=2020-10-01", json={}), 400, "InvalidParameter",
               "does not support SevSnpVm")
        _error(client.post("/attest/SevSnpVm?api-version=latest", json={}), 400, "InvalidParameter",
               "is not a version")


def test_request_built_by_the_client_is_the_real_shape(real_request, real_body):
    rebuilt = MaaRequest.from_body(real_request.to_body())
    assert rebuilt == MaaRequest.from_body(real_body)
    assert set(real_request.to_body()) == set(real_body)
