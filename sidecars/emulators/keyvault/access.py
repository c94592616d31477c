"""Who may call the vault: bearer access tokens from trusted issuers, and Key Vault's 401 challenge.

A token is accepted when it is a JWT signed (RS256/ES256) by a key of a trusted issuer, its `iss` is that
issuer, its `aud` names Key Vault (`https://vault.azure.net`, managed HSM, or Key Vault's application id)
and it is within `nbf`/`exp`. An issuer's keys come from a JWKS file (`--trust-issuer-jwks ISSUER=FILE`,
how the emulation's dev tokens are trusted) or from the issuer's OpenID metadata over TLS
(`--trust-issuer ISSUER`, how an Entra stand-in or Entra itself slots in). Any accepted caller may use
any key or secret: the stand-in models authentication, not Key Vault RBAC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from ...common.errors import ConfigError, Forbidden, Unauthorized
from ...common.jose import jwks_public_key
from .jwks import JwksCache

KEYVAULT_RESOURCE = "https://vault.azure.net"
DEFAULT_AUDIENCES = (
    "https://vault.azure.net", "https://vault.azure.net/", "https://managedhsm.azure.net",
    "https://managedhsm.azure.net/", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
)
CLOCK_SKEW_S = 60


class ChallengeError(Unauthorized):
    """401 with Key Vault's `WWW-Authenticate` challenge, so SDK clients learn where to get a token."""

    def __init__(self, message: str, authority: str, resource: str = KEYVAULT_RESOURCE):
        super().__init__(message)
        self.headers = {"WWW-Authenticate": f'Bearer authorization="{authority}", resource="{resource}"'}


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    jwks: dict[str, Any] | None = None  # static keys; None = OpenID discovery

    @classmethod
    def from_jwks_file(cls, issuer: str, path: str | Path) -> TrustedIssuer:
        try:
            return cls(issuer, json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the JWKS of {issuer} from {path}: {exc}") from None


class AccessTokenVerifier:
    def __init__(self, issuers: list[TrustedIssuer], jwks: JwksCache, *, challenge_authority: str,
                 audiences: tuple[str, ...] = DEFAULT_AUDIENCES):
        self._issuers = {i.issuer: i for i in issuers}
        self._jwks = jwks
        self.challenge_authority = challenge_authority
        self._audiences = audiences

    def _challenge(self, message: str) -> ChallengeError:
        return ChallengeError(message, self.challenge_authority)

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise self._challenge("AKV10022: Invalid audience or malformed bearer token.") from None
        issuer = self._issuers.get(unverified.get("iss", ""))
        if issuer is None:
            raise self._challenge(f"AKV10032: Invalid issuer {unverified.get('iss')!r}.")
        key = await self._issuer_key(issuer, header.get("kid"))
        if key is None:
            raise self._challenge("AKV10021: the token's signing key is not one of the issuer's keys.")
        try:
            return jwt.decode(token, key, algorithms=["RS256", "ES256"], audience=list(self._audiences),
                              issuer=issuer.issuer, leeway=CLOCK_SKEW_S,
                              options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise self._challenge("AKV10022: the access token has expired.") from None
        except jwt.InvalidAudienceError:
            raise self._challenge("AKV10022: Invalid audience.") from None
        except jwt.PyJWTError as exc:
            raise self._challenge(f"AKV10021: the access token is not valid: {exc}.") from None

    async def _issuer_key(self, issuer: TrustedIssuer, kid: str | None):
        if issuer.jwks is not None:
            return jwks_public_key(issuer.jwks, kid)
        try:
            return await self._jwks.key(await self._jwks.jwks_uri_from_metadata(issuer.issuer), kid)
        except Forbidden as exc:
            raise self._challenge(f"AKV10021: cannot get the keys of issuer {issuer.issuer}: {exc}") from None
