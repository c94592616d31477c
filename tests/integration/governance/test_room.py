"""The room's side: an attested governance sidecar gets secrets, documents, tokens and its certificate
from CGS, and audits; a room whose attestation does not match the contract's policy gets none of them."""

from __future__ import annotations

import hashlib

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sidecars.common.errors import CcrError
from sidecars.common.governance_client import GovernanceClient
from sidecars.common.roomsubjects import sidecars_subject
from sidecars.common.s3_credentials import STS_AUDIENCE, WebIdentity, room_credentials
from sidecars.common.transports import tls_verify
from sidecars.spec import S3Store


def test_db_access_seed_member_secret_reaches_the_app(consortium, governance):
    contract_id = consortium.new_contract()
    alice = consortium["alice"]
    secret_id = alice.put_secret(contract_id, "db-config", '{"host": "db.internal", "password": "s3cret"}')
    assert secret_id == f"{alice.identity.member_id}_db-config"

    base = governance(contract_id)
    response = httpx.post(f"{base}/secrets/{secret_id}")
    assert response.status_code == 200
    assert response.json() == {"value": '{"host": "db.internal", "password": "s3cret"}'}

    missing = httpx.post(f"{base}/secrets/{alice.identity.member_id}_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SecretNotFound"

    events, _ = alice.events(contract_id)
    assert any(e["data"].get("action") == "release_secret" and e["data"].get("secretId") == secret_id
               for e in events)


def test_document_token_and_certificate_for_the_attested_room(consortium, governance, cgs, local_ca):
    contract_id = consortium.new_contract()
    alice = consortium["alice"]
    alice.put_document("doc-" + contract_id, contract_id, {"query": "SELECT count(*) FROM t"})
    consortium.accept(alice.propose_document("doc-" + contract_id))
    consortium.enable_ca(contract_id)
    gov = GovernanceClient(governance(contract_id))

    document = gov.document("doc-" + contract_id)
    assert document["data"] == {"query": "SELECT count(*) FROM t"} and document["state"] == "Accepted"

    assertion = gov.client_assertion("tenant-1")
    verify = tls_verify(str(local_ca.cert_file))
    discovery = httpx.get(f"{cgs.url}/oidc/.well-known/openid-configuration", verify=verify).json()
    keys = httpx.get(discovery["jwks_uri"], verify=verify).json()
    key = jwt.PyJWK(keys["keys"][0]).key
    claims = jwt.decode(assertion, key, algorithms=["RS256"], audience="api://AzureADTokenExchange",
                        issuer=discovery["issuer"])
    assert claims["sub"] == contract_id and claims["tid"] == "tenant-1"

    room_key = ec.generate_private_key(ec.SECP384R1())
    public_pem = room_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    issued = gov.endorsed_cert(public_pem, subject_name="CN=room", subject_alternate_names=["dNSName:room.local",
                                                                                          "iPAddress:127.0.0.1"])
    assert set(issued) == {"cert"}  # as CGS answers: the CA is the members' to publish
    cert = x509.load_pem_x509_certificate(issued["cert"].encode())
    ca_cert = x509.load_pem_x509_certificate(alice.ca_status(contract_id)["caCert"].encode())
    cert.verify_directly_issued_by(ca_cert)
    assert cert.public_key().public_numbers() == room_key.public_key().public_numbers()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["room.local"]


def test_app_audit_lands_under_the_app_scope_and_sidecars_keep_theirs(consortium, governance):
    contract_id = consortium.new_contract()
    base = governance(contract_id, token="sidecar-token-123")
    GovernanceClient(base).audit({"message": "app started step 1"}, scope="skr")
    GovernanceClient(base, token="sidecar-token-123").audit({"event": "key released"}, scope="skr")
    events, _ = consortium["bob"].events(contract_id)
    by_data = {e["data"].get("message") or e["data"].get("event"): e for e in events}
    assert by_data["app started step 1"]["scope"] == "app"
    assert by_data["key released"]["scope"] == "skr"


def test_the_app_cannot_get_a_certificate_that_passes_for_a_sidecar(consortium, governance):
    """The contract CA endorses keys for the attested room, and the app may ask governance for one. A consumer
    trusts a datasink's results if their manifest is signed by `CN=ccr datasink NAME`, and clients trust the
    room's API as `CN=room`: the app asking for either (in any spelling) is refused; the sidecars get them."""
    contract_id = consortium.new_contract()
    consortium.enable_ca(contract_id)
    base = governance(contract_id, token="sidecar-token-123")
    public_pem = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for subject in ("CN=ccr datasink results", "cn = CCR  Datasink results", "CN=room", "room", "O=x,CN=Room",
                    "ccr datasink results"):
        with pytest.raises(CcrError) as refused:
            GovernanceClient(base).endorsed_cert(public_pem, subject_name=subject)
        assert "reserved for the room's sidecars" in str(refused.value), subject
    assert GovernanceClient(base).endorsed_cert(public_pem, subject_name="CN=my app")["cert"]
    issued = GovernanceClient(base, token="sidecar-token-123").endorsed_cert(
        public_pem, subject_name="CN=ccr datasink results")
    assert x509.load_pem_x509_certificate(issued["cert"].encode()).subject.rfc4514_string() == \
        "CN=ccr datasink results"


@pytest.mark.parametrize("room", [
    pytest.param({"host_data": hashlib.sha256(b"some other policy").digest()}, id="wrong-hostdata"),
    pytest.param({"debug": True}, id="debuggable"),
])
def test_room_outside_the_policy_gets_nothing(consortium, governance, room_evidence, room):
    contract_id = consortium.new_contract()
    alice = consortium["alice"]
    secret_id = alice.put_secret(contract_id, "db-config", "top secret")
    alice.put_document("doc-" + contract_id, contract_id, {"x": 1})
    consortium.accept(alice.propose_document("doc-" + contract_id))
    consortium.enable_ca(contract_id)
    base = governance(contract_id, evidence_url=room_evidence(**room))

    attempts = {
        "secret": httpx.post(f"{base}/secrets/{secret_id}"),
        "document": httpx.post(f"{base}/documents/doc-{contract_id}"),
        "token": httpx.post(f"{base}/oauth/token", params={"tenantId": "t", "sub": contract_id,
                                                           "aud": "api://AzureADTokenExchange"}),
        "certificate": httpx.post(f"{base}/ca/generateEndorsedCert", json={
            "publicKey": alice.identity.cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
            "subjectName": "CN=x", "subjectAlternateNames": [], "validityPeriodDays": 1}),
        "audit": httpx.put(f"{base}/events", json={"message": "forged"}),
    }
    for what, response in attempts.items():
        assert response.status_code == 400, f"{what}: {response.status_code} {response.text}"
        error = response.json()["error"]
        assert error["code"] == "VerifySnpAttestationFailed", what
        assert "top secret" not in response.text
    claim = "x-ms-sevsnpvm-hostdata" if "host_data" in room else "x-ms-sevsnpvm-is-debuggable"
    assert claim in attempts["secret"].json()["error"]["message"]
    events, _ = alice.events(contract_id)
    assert not any(e["data"].get("message") == "forged" for e in events)
    assert not any(e["data"].get("action", "").startswith(("release", "issue", "generate")) for e in events)


def test_the_app_cannot_get_a_token_for_the_sidecars_subject(consortium, governance, cgs, local_ca):
    """A party's S3 role trusts the contract's issuer for the sidecars' subject (`CONTRACT/ccr-sidecars`): the
    app, which may list the governance API, asking for that subject (or any but its own) is refused, and the
    refusal is on the contract's audit log. The token it can get names the contract id, which no role trusting
    the volumes accepts; the volumes' own request, with the sidecar token, still gets the sidecars' subject."""
    contract_id = consortium.new_contract()
    consortium.enable_ca(contract_id)
    base = governance(contract_id, token="sidecar-token-123")
    app = GovernanceClient(base)
    for subject in (sidecars_subject(contract_id), consortium.new_contract(), contract_id + " ", "x" * 300):
        with pytest.raises(CcrError) as refused:
            app.client_assertion("common", sub=subject, aud=STS_AUDIENCE)
        too_long = len(subject) > 256
        assert refused.value.status == (400 if too_long else 403), subject
        assert ("at most 256 characters" if too_long else "may ask only for its own subject") in str(refused.value)
    events, _ = consortium["alice"].events(contract_id)
    refusals = [e["data"] for e in events if e["data"].get("event") == "token-refused"]
    assert [r["sub"] for r in refusals] == [sidecars_subject(contract_id), refusals[1]["sub"], contract_id + " "]
    assert all(r["aud"] == STS_AUDIENCE for r in refusals)

    verify = tls_verify(str(local_ca.cert_file))
    discovery = httpx.get(f"{cgs.url}/oidc/.well-known/openid-configuration", verify=verify).json()
    key = jwt.PyJWK(httpx.get(discovery["jwks_uri"], verify=verify).json()["keys"][0]).key

    def claims(token: str) -> dict:
        return jwt.decode(token, key, algorithms=["RS256"], audience=STS_AUDIENCE, issuer=discovery["issuer"])

    own = claims(app.client_assertion("common", aud=STS_AUDIENCE))
    assert own["sub"] == contract_id != sidecars_subject(contract_id)
    store = S3Store.model_validate({"kind": "s3", "region": "us-east-1", "bucket": "hard-volumes",
                                    "credentials": {"role_arn": "arn:aws:iam::123456789012:role/room-volumes"}})
    with GovernanceClient(base, token="sidecar-token-123") as volumes:
        identity = room_credentials(store, volumes)
    assert isinstance(identity, WebIdentity) and claims(identity.token)["sub"] == sidecars_subject(contract_id)
