"""Signing release responses as Key Vault does: a JWS whose header carries the signer's certificate
chain (`x5c`), so the room can check the response came from the vault it called (the chain verifies to
the roots it trusts for that vault's TLS, for the vault's host name).

The stand-in signs with its TLS certificate and key: the chain the room already trusts for the vault.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ...common.errors import ConfigError
from ...common.jose import b64url_encode, x5c_chain


class ResponseSigner:
    def __init__(self, cert_file: str | Path, key_file: str | Path):
        try:
            self._chain = x509.load_pem_x509_certificates(Path(cert_file).read_bytes())
            self._key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the signing certificate/key ({cert_file}, {key_file}): {exc}") from None
        if isinstance(self._key, rsa.RSAPrivateKey):
            self.algorithm = "RS256"
        elif isinstance(self._key, ec.EllipticCurvePrivateKey) and self._key.curve.name == "secp256r1":
            self.algorithm = "ES256"
        elif isinstance(self._key, ec.EllipticCurvePrivateKey) and self._key.curve.name == "secp384r1":
            self.algorithm = "ES384"
        else:
            raise ConfigError(f"{key_file}: signing key must be RSA, P-256 or P-384")
        leaf_der = self._chain[0].public_bytes(serialization.Encoding.DER)
        self._headers = {
            "x5c": x5c_chain(self._chain),
            "x5t#S256": b64url_encode(hashlib.sha256(leaf_der).digest()),
            "kid": b64url_encode(hashlib.sha256(leaf_der).digest()),
        }

    def sign(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return jwt.api_jws.encode(body, self._key, algorithm=self.algorithm, headers=self._headers)
