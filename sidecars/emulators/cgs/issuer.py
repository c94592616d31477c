"""The CGS stand-in's OIDC issuer: its discovery document, its keys and the tokens it signs."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class OidcIssuer:
    """The contract-agnostic OIDC issuer that signs federated client assertions for attested rooms."""

    def __init__(self, key: rsa.RSAPrivateKey, issuer: str):
        self.key = key
        self.issuer = issuer
        public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(public_der).hexdigest()[:32]

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()

        def b64u(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "PS256", "kid": self.kid,
                          "n": b64u(numbers.n), "e": b64u(numbers.e)}]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": self.issuer + "/keys", "response_types_supported": ["id_token"],
                "id_token_signing_alg_values_supported": ["PS256"], "subject_types_supported": ["public"]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="PS256", headers={"kid": self.kid, "typ": "JWT"})
