"""The skr sidecar's pure parts: request parsing, wrapping keys, released-key JWKs."""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sidecars.common.errors import BadRequest
from sidecars.common.jose import b64url_encode, thumbprint
from sidecars.skr.destinations import https_origin
from sidecars.skr.flow import decode_runtime_data, key_path
from sidecars.skr.release import ReleasedKey
from sidecars.skr.wrapping import WrappingKey, WrappingKeyPool


def test_runtime_data_accepts_standard_and_url_safe_base64():
    data = bytes(range(250, 256)) * 3
    assert decode_runtime_data(base64.b64encode(data).decode()) == data
    assert decode_runtime_data(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data
    with pytest.raises(BadRequest, match="runtime_data"):
        decode_runtime_data("%%%")


@pytest.mark.parametrize("kid, expected", [
    ("kek", ("kek", None, None)),
    ("kek/0123abcd", ("kek", "0123abcd", None)),
    ("https://v.vault.azure.net/keys/kek/0123", ("kek", "0123", "https://v.vault.azure.net")),
    ("https://127.0.0.1:8443/keys/kek", ("kek", None, "https://127.0.0.1:8443")),
])
def test_key_path(kid, expected):
    assert key_path(kid) == expected


@pytest.mark.parametrize("kid", ["a/b/c", "https://v.vault.azure.net/secrets/x", "/"])
def test_key_path_refuses_other_shapes(kid):
    with pytest.raises(BadRequest, match="kid"):
        key_path(kid)


def test_https_origin():
    assert https_origin("myvault.vault.azure.net", "akv_endpoint") == "https://myvault.vault.azure.net"
    assert https_origin("https://127.0.0.1:9/", "akv_endpoint") == "https://127.0.0.1:9"
    with pytest.raises(BadRequest, match="akv_endpoint"):
        https_origin("http://127.0.0.1:9", "akv_endpoint")


def test_wrapping_key_runtime_data_is_a_jwks_with_thumbprint_kid():
    key = WrappingKey.generate()
    jwks = json.loads(key.runtime_data())
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == thumbprint(jwk) and jwk["kty"] == "RSA" and "d" not in jwk


def test_pool_hands_out_each_key_once():
    pool = WrappingKeyPool(size=2)
    assert pool.wait_full(30)
    seen = {pool.take().jwk["kid"] for _ in range(4)}
    assert len(seen) == 4


def test_released_key_jwks():
    raw = os.urandom(32)
    assert ReleasedKey("oct-HSM", raw, "kid", ()).jwk() == {"kty": "oct", "k": b64url_encode(raw)}
    ec_key = ec.generate_private_key(ec.SECP256R1())
    der = ec_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    jwk = ReleasedKey("EC-HSM", der, "kid", ()).jwk()
    d = ec_key.private_numbers().private_value.to_bytes(32, "big")
    assert jwk["crv"] == "P-256" and jwk["d"] == b64url_encode(d)


def test_answer_for_another_key_is_refused():
    from sidecars.skr.flow import _check_answer_names
    from sidecars.skr.release import ReleaseVerificationError

    _check_answer_names("https://v/keys/kek/abc", "kek", None)
    _check_answer_names("https://v/keys/kek/abc", "kek", "abc")
    for answered in ("https://v/keys/other/abc", "https://v/keys/kek/def", "", "a/b/c", "https://v/secrets/kek"):
        with pytest.raises(ReleaseVerificationError):
            _check_answer_names(answered, "kek", "abc")


def test_unavailable_managed_identity_is_a_403_not_a_crash(monkeypatch):
    from sidecars.common.errors import Forbidden
    from sidecars.skr.__main__ import build_token_source
    from sidecars.skr.sidecar import SkrConfig

    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")  # App Service style, refused port
    monkeypatch.setenv("IDENTITY_HEADER", "h")
    source = build_token_source(SkrConfig(port=0))
    with pytest.raises(Forbidden, match="cannot get an access token"):
        source("https://vault.azure.net/.default")
