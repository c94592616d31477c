"""Who may call the vault: bearer access tokens from trusted issuers, and Key Vault's 401 challenge.

A token is accepted when it is a JWT signed (RS256/ES256) by a key of a trusted issuer, its `iss` is that
issuer, its `aud` names Key Vault (`https://vault.azure.net`, managed HSM, or Key Vault's application id)
and it is within `nbf`/`exp`. An issuer's keys come from a JWKS file (`--trust-issuer-jwks ISSUER=FILE`,
how the emulation's dev tokens are trusted), from the issuer's OpenID metadata over TLS
(`--trust-issuer ISSUER`), or, for an Entra-shaped token service (`--trust-entra URL`: the Entra
stand-in), from `URL/{tenant}/discovery/v2.0/keys` for tokens of any tenant, whose issuer Entra spells
`https://sts.windows.net/{tenant}/` (v1) or `URL/{tenant}/v2.0` (v2). Any accepted caller may use
any key or secret: the stand-in models authentication, not Key Vault RBAC.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...common.errors import ConfigError, Forbidden, Unauthorized
from ...common.jose import CompactJws, InvalidJws, check_lifetime, jwks_public_key
from .jwks import JwksCache

KEYVAULT_RESOURCE = "https://vault.azure.net"
DEFAULT_AUDIENCES = (
    "https://vault.azure.net", "https://vault.azure.net/", "https://managedhsm.azure.net",
    "https://managedhsm.azure.net/", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
)
CLOCK_SKEW_S = 60
ALGORITHMS = ("RS256", "ES256")
TENANT = r"[0-9A-Za-z][0-9A-Za-z.-]*"


class ChallengeError(Unauthorized):
    """401 with Key Vault's `WWW-Authenticate` challenge, so SDK clients learn where to get a token."""

    def __init__(self, message: str, authority: str, resource: str = KEYVAULT_RESOURCE):
        super().__init__(message)
        self.headers = {"WWW-Authenticate": f'Bearer authorization="{authority}", resource="{resource}"'}


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    jwks: dict[str, Any] | None = None  # static keys; None = OpenID discovery
    jwks_url: str | None = None

    @classmethod
    def from_jwks_file(cls, issuer: str, path: str | Path) -> TrustedIssuer:
        try:
            return cls(issuer, json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the JWKS of {issuer} from {path}: {exc}") from None


@dataclass(frozen=True)
class EntraService:
    """An Entra-shaped token service at `url`, trusted for every tenant it serves."""

    url: str

    def issuer_for(self, issuer: str) -> TrustedIssuer | None:
        base = re.escape(self.url.rstrip("/"))
        for pattern in (rf"^https://sts\.windows\.net/({TENANT})/$", rf"^{base}/({TENANT})/v2\.0$"):
            match = re.match(pattern, issuer)
            if match:
                return TrustedIssuer(issuer, jwks_url=f"{self.url.rstrip('/')}/{match.group(1)}/discovery/v2.0/keys")
        return None


class AccessTokenVerifier:
    def __init__(self, issuers: list[TrustedIssuer], jwks: JwksCache, *, challenge_authority: str,
                 entra: list[EntraService] | None = None, audiences: tuple[str, ...] = DEFAULT_AUDIENCES):
        self._issuers = {i.issuer: i for i in issuers}
        self._entra = entra or []
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
        try:
            jws = CompactJws.parse(token.strip())
            unverified = jws.claims()
        except InvalidJws:
            raise self._challenge("AKV10022: Invalid audience or malformed bearer token.") from None
        claimed = str(unverified.get("iss", ""))
        # The same issuer name may be served by several trusted services (the dev tenant through Entra):
        # the token's kid decides which one signed it.
        candidates = [self._issuers[claimed]] if claimed in self._issuers else []
        candidates += [found for service in self._entra if (found := service.issuer_for(claimed))]
        if not candidates:
            raise self._challenge(f"AKV10032: Invalid issuer {unverified.get('iss')!r}.")
        kid = jws.header.get("kid")
        key = None
        for issuer in candidates:
            key = await self._issuer_key(issuer, kid if isinstance(kid, str) else None)
            if key is not None:
                break
        if key is None:
            raise self._challenge("AKV10021: the token's signing key is not one of the issuer's keys.")
        if not jws.verify(key, ALGORITHMS):
            raise self._challenge("AKV10021: the access token's signature does not verify.")
        problem = check_lifetime(unverified, leeway=CLOCK_SKEW_S)
        if problem:
            raise self._challenge(f"AKV10022: the access token {problem}.")
        audience = unverified.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(a in self._audiences for a in audiences):
            raise self._challenge("AKV10022: Invalid audience.")
        return unverified

    async def _issuer_key(self, issuer: TrustedIssuer, kid: str | None):
        if issuer.jwks is not None:
            return jwks_public_key(issuer.jwks, kid)
        try:
            url = issuer.jwks_url or await self._jwks.jwks_uri_from_metadata(issuer.issuer)
            return await self._jwks.key(url, kid)
        except Forbidden as exc:
            raise self._challenge(f"AKV10021: cannot get the keys of issuer {issuer.issuer}: {exc}") from None
