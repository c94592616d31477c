"""Attacks on the Key Vault stand-in: wrong or forged attestation, forged or expired access tokens,
malformed requests. Each refusal has Key Vault's status and names the reason; none carries key material,
and the vault's log never shows it either."""

from __future__ import annotations

import json
import os
import ssl
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.common.devtokens import DEV_TENANT_ID, dev_issuer
from sidecars.common.jose import b64url_encode, public_jwk, thumbprint
from sidecars.common.release_policy import sevsnp_policy

from .conftest import HOST_DATA

API = {"api-version": "7.4"}


@pytest.fixture(scope="module")
def room_jwk() -> dict:
    jwk = public_jwk(rsa.generate_private_key(65537, 2048).public_key())
    jwk["kid"] = thumbprint(jwk)
    return jwk


@pytest.fixture
def client(keyvault):
    token = keyvault.tokens.credential().get_token("https://vault.azure.net/.default").token
    with httpx.Client(base_url=keyvault.url, verify=ssl.create_default_context(cafile=keyvault.ca_file),
                      headers={"Authorization": f"Bearer {token}"}) as http:
        yield http


@pytest.fixture
def secret_key(client, authority):
    """An imported oct-HSM key whose bytes the tests look for in every refusal and in the log."""
    material = os.urandom(32)
    name = f"kek-{uuid.uuid4().hex[:8]}"
    policy = json.dumps(sevsnp_policy(authority.url, HOST_DATA)).encode()
    response = client.put(f"/keys/{name}", params=API, json={
        "key": {"kty": "oct-HSM", "k": b64url_encode(material)}, "attributes": {"exportable": True},
        "release_policy": {"data": b64url_encode(policy)}})
    assert response.status_code == 200, response.text
    return name, material


def release(client, name, target, **body):
    return client.post(f"/keys/{name}/release", params=API, json={"target": target, **body})


def assert_refused(response, status, *words, material, keyvault):
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message
    for form in (b64url_encode(material), material.hex()):
        assert form not in response.text and form not in keyvault.log()
    assert "value" not in response.json()


def test_host_data_mismatch_is_403_naming_the_claim(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    token = authority.token(room_jwk, **{"x-ms-sevsnpvm-hostdata": "00" * 32})
    assert_refused(release(client, name, token), 403, "x-ms-sevsnpvm-hostdata", material=material,
                   keyvault=keyvault)


def test_debuggable_room_is_403(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    token = authority.token(room_jwk, **{"x-ms-sevsnpvm-is-debuggable": True})
    assert_refused(release(client, name, token), 403, "x-ms-sevsnpvm-is-debuggable", material=material,
                   keyvault=keyvault)


def test_non_compliant_uvm_is_403(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    token = authority.token(room_jwk, **{"x-ms-compliance-status": None})
    assert_refused(release(client, name, token), 403, "x-ms-compliance-status", material=material,
                   keyvault=keyvault)


def test_expired_attestation_token_is_403(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    past = int(time.time()) - 3600
    token = authority.token(room_jwk, iat=past - 600, nbf=past - 600, exp=past)
    assert_refused(release(client, name, token), 403, "expired", material=material, keyvault=keyvault)


def test_tampered_attestation_token_is_403(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    header, payload, signature = authority.token(room_jwk, **{"x-ms-sevsnpvm-hostdata": "11" * 32}).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["x-ms-sevsnpvm-hostdata"] = HOST_DATA
    forged = ".".join([header, b64url_encode(json.dumps(claims).encode()), signature])
    assert_refused(release(client, name, forged), 403, "signature", material=material, keyvault=keyvault)


def test_token_signed_by_another_key_is_403(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    token = authority.token(room_jwk, key=rsa.generate_private_key(65537, 2048))
    assert_refused(release(client, name, token), 403, "signature", material=material, keyvault=keyvault)


def test_jku_outside_the_authority_is_not_followed(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    token = authority.token(room_jwk, jku="https://127.0.0.1:1/certs", key=rsa.generate_private_key(65537, 2048))
    assert_refused(release(client, name, token), 403, "jku", material=material, keyvault=keyvault)


def test_issuer_not_in_policy_is_403(client, keyvault, authority, secret_key, room_jwk):
    name, material = secret_key
    token = authority.token(room_jwk, iss="https://evil.attest.example")
    assert_refused(release(client, name, token), 403, "not an authority", material=material, keyvault=keyvault)


def test_token_without_runtime_rsa_key_is_403(client, keyvault, authority, secret_key):
    name, material = secret_key
    token = authority.token({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
    assert_refused(release(client, name, token), 403, "x-ms-runtime.keys", material=material, keyvault=keyvault)


def test_malformed_release_bodies_are_400_naming_the_field(client, keyvault, secret_key):
    name, material = secret_key
    assert_refused(client.post(f"/keys/{name}/release", params=API, json={}), 400, "target",
                   material=material, keyvault=keyvault)
    assert_refused(release(client, name, "x.y.z", enc="ROT13"), 400, "enc", material=material, keyvault=keyvault)
    assert_refused(client.post(f"/keys/{name}/release", params=API, content=b"{not json"), 400, "body",
                   material=material, keyvault=keyvault)
    assert_refused(release(client, name, "not-a-jwt"), 403, "target", material=material, keyvault=keyvault)


def test_missing_api_version_is_400(client):
    response = client.get("/keys")
    assert response.status_code == 400 and "api-version" in response.json()["error"]["message"]


def test_unauthenticated_request_gets_the_key_vault_challenge(keyvault):
    response = httpx.get(f"{keyvault.url}/keys", params=API, verify=ssl.create_default_context(cafile=keyvault.ca_file))
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer authorization="') and 'resource="https://vault.azure.net"' in challenge
    assert DEV_TENANT_ID in challenge


def _dev_claims(**overrides):
    now = int(time.time())
    claims = {"iss": dev_issuer(), "aud": "https://vault.azure.net", "iat": now, "nbf": now, "exp": now + 600,
              "tid": DEV_TENANT_ID, "oid": "x"}
    claims.update(overrides)
    return claims


@pytest.mark.parametrize("case", ["forged-signature", "expired", "wrong-audience", "unknown-issuer", "garbage"])
def test_bad_access_tokens_are_401(keyvault, case):
    real = keyvault.tokens.credential().get_token("https://vault.azure.net/.default").token
    kid = jwt.get_unverified_header(real)["kid"]
    signing_key = keyvault.tokens.credential()._key
    now = int(time.time())
    if case == "garbage":
        token = "abc.def.ghi"
    elif case == "forged-signature":
        token = jwt.encode(_dev_claims(), rsa.generate_private_key(65537, 2048), algorithm="RS256",
                           headers={"kid": kid})
    else:
        overrides = {"expired": {"exp": now - 3600, "nbf": now - 7200},
                     "wrong-audience": {"aud": "https://storage.azure.com"},
                     "unknown-issuer": {"iss": "https://sts.windows.net/another-tenant/"}}[case]
        token = jwt.encode(_dev_claims(**overrides), signing_key, algorithm="RS256", headers={"kid": kid})
    response = httpx.get(f"{keyvault.url}/keys", params=API, verify=ssl.create_default_context(cafile=keyvault.ca_file),
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, (case, response.text)
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization=")
