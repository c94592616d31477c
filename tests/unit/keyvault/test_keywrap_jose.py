"""RSA-AES key wrapping (Key Vault's key_hsm format) and JOSE helpers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidecars.common.jose import (
    ec_private_from_jwk,
    private_jwk,
    rsa_private_from_jwk,
    thumbprint,
)
from sidecars.common.keywrap import KeyWrapAlgorithm, UnwrapError, rsa_aes_unwrap, rsa_aes_wrap

KEY = rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize("algorithm", list(KeyWrapAlgorithm))
@pytest.mark.parametrize("size", [16, 32, 1217])
def test_wrap_roundtrip(algorithm, size):
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    blob = rsa_aes_wrap(KEY.public_key(), plaintext, algorithm)
    assert len(blob) >= 256 + size + 8 and rsa_aes_unwrap(KEY, blob, algorithm) == plaintext


def test_unwrap_refuses_tampering_other_keys_and_wrong_algorithm():
    blob = rsa_aes_wrap(KEY.public_key(), b"k" * 32, KeyWrapAlgorithm.RSA_AES_KEY_WRAP_256)
    for index in (0, 255, 256, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[index] ^= 1
        with pytest.raises(UnwrapError):
            rsa_aes_unwrap(KEY, bytes(tampered), KeyWrapAlgorithm.RSA_AES_KEY_WRAP_256)
    with pytest.raises(UnwrapError):
        rsa_aes_unwrap(rsa.generate_private_key(65537, 2048), blob, KeyWrapAlgorithm.RSA_AES_KEY_WRAP_256)
    with pytest.raises(UnwrapError):
        rsa_aes_unwrap(KEY, blob, KeyWrapAlgorithm.CKM_RSA_AES_KEY_WRAP)
    with pytest.raises(UnwrapError):
        rsa_aes_unwrap(KEY, blob[:200])


def test_rfc7638_thumbprint_example():
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
                "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnY"
                "b9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqb"
                "w0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_private_jwk_roundtrip():
    assert rsa_private_from_jwk(private_jwk(KEY)).private_numbers() == KEY.private_numbers()
    ec_key = ec.generate_private_key(ec.SECP384R1())
    assert ec_private_from_jwk(private_jwk(ec_key)).private_numbers() == ec_key.private_numbers()
