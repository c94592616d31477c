"""The Key Vault stand-in driven by the official SDKs (azure-keyvault-keys / -secrets), as a data owner
and the room use it: exportable keys with release policies, secure key release, secrets."""

from __future__ import annotations

import json
import os
import ssl
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyReleasePolicy
from azure.keyvault.keys._enums import KeyExportEncryptionAlgorithm
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.common.jose import b64url_encode, public_jwk, thumbprint
from sidecars.common.release_policy import sevsnp_policy
from sidecars.skr.release import load_roots, unwrap_released_key, verify_release_jws

from .conftest import HOST_DATA


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def keys(keyvault) -> KeyClient:
    return KeyClient(keyvault.url, keyvault.tokens.credential(), connection_verify=keyvault.ca_file,
                     verify_challenge_resource=False)


@pytest.fixture
def secrets(keyvault) -> SecretClient:
    return SecretClient(keyvault.url, keyvault.tokens.credential(), connection_verify=keyvault.ca_file,
                        verify_challenge_resource=False)


@pytest.fixture(scope="module")
def room_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def runtime_jwk(room_key: rsa.RSAPrivateKey) -> dict:
    jwk = public_jwk(room_key.public_key())
    jwk.update(kid=thumbprint(jwk), key_ops=["encrypt"])
    return jwk


def policy_for(authority, **kwargs) -> KeyReleasePolicy:
    return KeyReleasePolicy(json.dumps(sevsnp_policy(authority.url, HOST_DATA, **kwargs)).encode())


def unwrap(keyvault, value: str, room_key):
    payload = verify_release_jws(value, urlsplit(keyvault.url).hostname, load_roots(keyvault.ca_file))
    return payload, unwrap_released_key(payload, room_key)


def test_create_exportable_rsa_hsm_key_and_release_it(keys, keyvault, authority, room_key):
    name = _name("kek")
    created = keys.create_rsa_key(name, size=2048, hardware_protected=True, exportable=True,
                                  release_policy=policy_for(authority))
    assert created.key_type == "RSA-HSM" and created.properties.exportable is True
    assert json.loads(created.properties.release_policy.encoded_policy)["anyOf"][0]["authority"] == authority.url

    result = keys.release_key(name, authority.token(runtime_jwk(room_key)))
    payload, released = unwrap(keyvault, result.value, room_key)
    private = serialization.load_der_private_key(released.material, password=None)
    assert private.public_key().public_numbers().n == int.from_bytes(created.key.n, "big")
    assert released.kty == "RSA-HSM" and payload["request"]["enc"] == "CKM_RSA_AES_KEY_WRAP"
    assert released.jwk()["kty"] == "RSA" and "d" in released.jwk()


@pytest.mark.parametrize("algorithm", list(KeyExportEncryptionAlgorithm))
def test_imported_oct_hsm_key_released_with_each_wrapping(keys, keyvault, authority, room_key, algorithm):
    name = _name("dek")
    material = os.urandom(32)
    keys.import_key(name, JsonWebKey(kty="oct-HSM", k=material, key_ops=["wrapKey", "unwrapKey"]),
                    exportable=True, release_policy=policy_for(authority))
    result = keys.release_key(name, authority.token(runtime_jwk(room_key)), algorithm=algorithm, nonce="n-1")
    payload, released = unwrap(keyvault, result.value, room_key)
    assert released.material == material
    assert payload["request"]["enc"] == str(algorithm.value) and payload["request"]["nonce"] == "n-1"
    assert released.jwk() == {"kty": "oct", "k": b64url_encode(material)}


def test_ec_key_release_by_version_and_versions_listed(keys, keyvault, authority, room_key):
    name = _name("ec")
    first = keys.create_ec_key(name, curve="P-384", hardware_protected=True, exportable=True,
                               release_policy=policy_for(authority))
    second = keys.create_ec_key(name, curve="P-256", exportable=True, release_policy=policy_for(authority))
    assert [p.version for p in keys.list_properties_of_key_versions(name)] == [first.properties.version,
                                                                             second.properties.version]
    assert keys.get_key(name).properties.version == second.properties.version
    assert keys.get_key(name, first.properties.version).key.crv == "P-384"
    result = keys.release_key(name, authority.token(runtime_jwk(room_key)), version=first.properties.version)
    _payload, released = unwrap(keyvault, result.value, room_key)
    assert released.kty == "EC-HSM" and released.jwk()["crv"] == "P-384"
    assert name in [k.name for k in keys.list_properties_of_keys()]


def test_secrets_set_get_and_versions(secrets):
    name = _name("wrapped-dek")
    first = secrets.set_secret(name, "v1", content_type="application/octet-stream")
    second = secrets.set_secret(name, "v2")
    assert secrets.get_secret(name).value == "v2"
    assert secrets.get_secret(name, first.properties.version).value == "v1"
    assert secrets.get_secret(name, first.properties.version).properties.content_type == "application/octet-stream"
    assert {p.version for p in secrets.list_properties_of_secret_versions(name)} == {
        first.properties.version, second.properties.version}
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret(_name("absent"))


def test_unknown_key_and_version_are_404(keys, authority, room_key):
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(_name("absent"))
    name = _name("kek")
    keys.create_rsa_key(name, exportable=True, release_policy=policy_for(authority))
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name, uuid.uuid4().hex)
    with pytest.raises(ResourceNotFoundError):
        keys.release_key(_name("absent"), authority.token(runtime_jwk(room_key)))
    with pytest.raises(ResourceNotFoundError):
        keys.release_key(name, authority.token(runtime_jwk(room_key)), version=uuid.uuid4().hex)


def test_exportable_key_without_policy_is_400_naming_the_field(keys):
    with pytest.raises(HttpResponseError) as err:
        keys.create_rsa_key(_name("kek"), exportable=True)
    assert err.value.status_code == 400 and "release_policy" in err.value.message


def test_malformed_policy_is_400_naming_the_path(keys, authority):
    bad = {"version": "1.0.0", "anyOf": [{"authority": authority.url,
                                          "allOf": [{"claim": "x-ms-sevsnpvm-hostdata", "equal": "00"}]}]}
    with pytest.raises(HttpResponseError) as err:
        keys.create_rsa_key(_name("kek"), exportable=True, release_policy=KeyReleasePolicy(json.dumps(bad).encode()))
    assert err.value.status_code == 400 and "anyOf[0].allOf[0]" in err.value.message


def test_non_exportable_key_is_never_released(keys, authority, room_key):
    name = _name("kek")
    keys.create_rsa_key(name, hardware_protected=True)
    with pytest.raises(HttpResponseError) as err:
        keys.release_key(name, authority.token(runtime_jwk(room_key)))
    assert err.value.status_code == 403 and "not exportable" in err.value.message


def test_owner_rebinds_a_key_to_a_new_policy_unless_immutable(keys, keyvault, authority, room_key):
    name = _name("kek")
    keys.create_rsa_key(name, exportable=True, release_policy=policy_for(authority))
    new_host_data = "cd" * 32
    new_policy = json.dumps(sevsnp_policy(authority.url, new_host_data)).encode()
    keys.update_key_properties(name, release_policy=KeyReleasePolicy(new_policy, immutable=True))
    with pytest.raises(HttpResponseError) as err:
        keys.release_key(name, authority.token(runtime_jwk(room_key)))
    assert err.value.status_code == 403 and "x-ms-sevsnpvm-hostdata" in err.value.message
    token = authority.token(runtime_jwk(room_key), **{"x-ms-sevsnpvm-hostdata": new_host_data})
    released = keys.release_key(name, token)
    assert unwrap(keyvault, released.value, room_key)[1].kty == "RSA"
    with pytest.raises(HttpResponseError) as err:
        keys.update_key_properties(name, release_policy=policy_for(authority))
    assert err.value.status_code == 403 and "immutable" in err.value.message
    token = keyvault.tokens.credential().get_token("https://vault.azure.net/.default").token
    answer = httpx.patch(f"{keyvault.url}/keys/{name}/", params={"api-version": "7.4"},
                         json={"attributes": {"exportable": False}}, headers={"Authorization": f"Bearer {token}"},
                         verify=ssl.create_default_context(cafile=keyvault.ca_file))
    assert answer.status_code == 400 and "exportable" in answer.json()["error"]["message"]
