"""The room's check of Key Vault's release answer: chain to the trusted roots for the vault's name,
signature over the payload, and the wrapped key unwrappable only with the room's key."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.common.jose import b64url_encode
from sidecars.common.keywrap import KeyWrapAlgorithm, rsa_aes_wrap
from sidecars.common.tls import LocalCA
from sidecars.emulators.keyvault.signer import ResponseSigner
from sidecars.skr.release import (
    ReleaseVerificationError,
    VerifiedChains,
    load_roots,
    unwrap_released_key,
    verify_release_jws,
)

ROOM = rsa.generate_private_key(65537, 2048)


def payload(material: bytes = b"k" * 32) -> dict:
    blob = rsa_aes_wrap(ROOM.public_key(), material, KeyWrapAlgorithm.RSA_AES_KEY_WRAP_256)
    key_hsm = {"schema_version": "1.0", "header": {"alg": "dir", "enc": "RSA_AES_KEY_WRAP_256"},
               "ciphertext": b64url_encode(blob)}
    return {"request": {"enc": "RSA_AES_KEY_WRAP_256", "kid": "k"},
            "response": {"key": {"key": {"kty": "oct-HSM", "kid": "k",
                                         "key_hsm": b64url_encode(json.dumps(key_hsm).encode())}}}}


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    ca = LocalCA.create(tmp_path_factory.mktemp("ca"))
    tls = ca.issue_server_cert("keyvault")
    return ResponseSigner(tls.cert_file, tls.key_file), load_roots(ca.cert_file)


def test_genuine_answer_unwraps(vault):
    signer, roots = vault
    checked = verify_release_jws(signer.sign(payload(b"secret-bytes-32-long-xxxxxxxxxxx")), "127.0.0.1", roots)
    assert unwrap_released_key(checked, ROOM).material == b"secret-bytes-32-long-xxxxxxxxxxx"


def test_answer_for_another_host_or_from_another_ca_is_refused(vault, tmp_path):
    signer, roots = vault
    with pytest.raises(ReleaseVerificationError, match="not signed for"):
        verify_release_jws(signer.sign(payload()), "vault.example", roots)
    other = LocalCA.create(tmp_path / "other").issue_server_cert("keyvault")
    with pytest.raises(ReleaseVerificationError, match="not signed for"):
        verify_release_jws(ResponseSigner(other.cert_file, other.key_file).sign(payload()), "127.0.0.1", roots)


def test_tampered_payload_is_refused_even_with_a_remembered_chain(vault):
    signer, roots = vault
    verified = VerifiedChains()
    header, body, signature = signer.sign(payload()).split(".")
    verify_release_jws(".".join([header, body, signature]), "127.0.0.1", roots, verified)
    forged = payload(b"attacker-chosen-key-material-32b")
    forged_body = b64url_encode(json.dumps(forged, separators=(",", ":")).encode())
    with pytest.raises(ReleaseVerificationError, match="signature"):
        verify_release_jws(".".join([header, forged_body, signature]), "127.0.0.1", roots, verified)
