"""RSA-AES key wrapping as Azure Key Vault / managed HSM and CGS use it.

A wrapped blob is `RSA-OAEP(temporary AES key) ‖ AES-KWP(temporary AES key, plaintext)` (AES key wrap
with padding, RFC 5649). The RSA ciphertext is as long as the recipient's modulus. The `enc` name selects
the OAEP hash, as in Key Vault's release API and the PKCS#11 mechanism it is named after:
`CKM_RSA_AES_KEY_WRAP` (SHA-1), `RSA_AES_KEY_WRAP_256` (SHA-256), `RSA_AES_KEY_WRAP_384` (SHA-384).
"""

from __future__ import annotations

import os
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from .errors import BadRequest


class KeyWrapAlgorithm(StrEnum):
    CKM_RSA_AES_KEY_WRAP = "CKM_RSA_AES_KEY_WRAP"
    RSA_AES_KEY_WRAP_256 = "RSA_AES_KEY_WRAP_256"
    RSA_AES_KEY_WRAP_384 = "RSA_AES_KEY_WRAP_384"

    def oaep(self) -> padding.OAEP:
        digest = {
            KeyWrapAlgorithm.CKM_RSA_AES_KEY_WRAP: hashes.SHA1,
            KeyWrapAlgorithm.RSA_AES_KEY_WRAP_256: hashes.SHA256,
            KeyWrapAlgorithm.RSA_AES_KEY_WRAP_384: hashes.SHA384,
        }[self]()
        return padding.OAEP(mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None)


class UnwrapError(BadRequest):
    """The blob was not wrapped to this key, or was altered."""

    code = "UnwrapFailed"


def rsa_aes_wrap(recipient: rsa.RSAPublicKey, plaintext: bytes,
                 algorithm: KeyWrapAlgorithm = KeyWrapAlgorithm.RSA_AES_KEY_WRAP_256) -> bytes:
    transport_key = os.urandom(32)
    return recipient.encrypt(transport_key, algorithm.oaep()) + aes_key_wrap_with_padding(transport_key, plaintext)


def rsa_aes_unwrap(private_key: rsa.RSAPrivateKey, blob: bytes,
                   algorithm: KeyWrapAlgorithm = KeyWrapAlgorithm.RSA_AES_KEY_WRAP_256) -> bytes:
    split = private_key.key_size // 8
    if len(blob) <= split + 8:
        raise UnwrapError(f"wrapped blob is {len(blob)} bytes: too short for a {private_key.key_size}-bit RSA key")
    try:
        transport_key = private_key.decrypt(blob[:split], algorithm.oaep())
        return aes_key_unwrap_with_padding(transport_key, blob[split:])
    except (ValueError, InvalidUnwrap):
        raise UnwrapError(f"cannot unwrap with {algorithm}: not wrapped to this key, or altered") from None
