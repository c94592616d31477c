"""Verifying the attestation token (`target`) presented to release a key.

Only an authority named by the key's release policy is asked for signing keys: the token's `iss` selects
the policy's rules, and the keys come from the token's `jku` only when it lies under that authority
(same scheme, host and port), otherwise from the authority's OpenID metadata. A token whose `jku` points
elsewhere is refused rather than followed, so a forged token cannot name its own key server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ...common.errors import Forbidden, PolicyDenied
from ...common.jose import CompactJws, InvalidJws, check_lifetime
from ...common.release_policy import ReleasePolicy, normalize_authority
from .jwks import JwksCache

CLOCK_SKEW_S = 30
ALGORITHMS = ("RS256",)


class AttestationTokenError(Forbidden):
    code = "AttestationTokenInvalid"


def _origin(url: str) -> str:
    parts = urlsplit(normalize_authority(url))
    return f"{parts.scheme}://{parts.netloc}"


async def verify_attestation_token(token: str, policy: ReleasePolicy, jwks: JwksCache) -> dict[str, Any]:
    """The token's claims, once its signature, issuer and lifetime check out and the policy holds."""
    try:
        jws = CompactJws.parse(token)
        unverified = jws.claims()
    except InvalidJws:
        raise AttestationTokenError("target: not a JWT attestation token") from None
    header = jws.header
    issuer = unverified.get("iss")
    if not isinstance(issuer, str):
        raise AttestationTokenError("target: the attestation token has no issuer (iss)")
    rules = policy.rules_for(issuer)
    if not rules:
        raise PolicyDenied(f"token issuer {issuer} is not an authority of the key's release policy "
                           f"(authorities: {', '.join(policy.authorities)})")
    authority = rules[0].authority
    if header.get("alg") not in ALGORITHMS:
        raise AttestationTokenError(f"target: algorithm {header.get('alg')!r} is not accepted; expected RS256")
    jku = header.get("jku")
    if jku is not None:
        if not isinstance(jku, str) or _origin(jku) != _origin(authority):
            raise AttestationTokenError(f"target: jku {jku!r} is not served by the authority {authority}")
        jwks_url = jku
    else:
        jwks_url = await jwks.jwks_uri_from_metadata(normalize_authority(authority))
        if _origin(jwks_url) != _origin(authority):
            raise AttestationTokenError(f"the jwks_uri of {authority} points outside the authority")
    kid = header.get("kid")
    key = await jwks.key(jwks_url, kid if isinstance(kid, str) else None)
    if key is None:
        raise AttestationTokenError(f"target: signing key {kid!r} is not one of {authority}'s keys")
    if not jws.verify(key, ALGORITHMS):
        raise AttestationTokenError("target: the attestation token's signature does not verify")
    problem = check_lifetime(unverified, leeway=CLOCK_SKEW_S)
    if problem:
        raise AttestationTokenError(f"target: the attestation token {problem}")
    policy.evaluate(issuer, unverified)
    return unverified
