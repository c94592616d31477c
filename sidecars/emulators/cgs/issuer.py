"""The CGS stand-in's OIDC issuer: its discovery document, its keys and the tokens it signs.

As in CGS, the issuer has no key until the members want one: an accepted `enable_oidc_issuer` proposal enables
it, and a member then asks for the signing key (`/app/oidc/generateSigningKey`, see `oidc`). Until then it
publishes no keys and signs nothing. The key is kept in the stand-in's database, so a restart keeps it."""

from __future__ import annotations

import base64
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ...common.errors import CcrError


class SigningKeyNotAvailable(CcrError):
    http_status = 405

    def __init__(self) -> None:
        super().__init__("Propose enable_oidc_issuer and generate signing key before attempting to fetch it.",
                         code="SigningKeyNotAvailable")


class OidcIssuer:
    """The contract-agnostic OIDC issuer that signs federated client assertions for attested rooms. `issuer` is
    the stand-in's own `/oidc` URL, used unless the members proposed another (`set_oidc_issuer_url`)."""

    def __init__(self, key: rsa.RSAPrivateKey | None, issuer: str, kid: str = ""):
        self.key = key
        self.kid = kid
        self.issuer = issuer

    def use_key(self, key_pem: str, kid: str) -> None:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the OIDC signing key is not an RSA key")
        self.key, self.kid = key, kid

    def _key(self) -> rsa.RSAPrivateKey:
        if self.key is None:
            raise SigningKeyNotAvailable()
        return self.key

    def jwks(self) -> dict[str, Any]:
        numbers = self._key().public_key().public_numbers()

        def b64u(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                          "n": b64u(numbers.n), "e": b64u(numbers.e)}]}

    def discovery(self, issuer: str) -> dict[str, Any]:
        return {"issuer": issuer, "jwks_uri": issuer + "/keys", "response_types_supported": ["id_token"],
                "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["public"]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key(), algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})
