"""Verifying the attestation token (`target`) presented to release a key.

Only an authority named by the key's release policy is asked for signing keys: the token's `iss` selects
the policy's rules, and the keys come from the token's `jku` only when it lies under that authority
(same scheme, host and port), otherwise from the authority's OpenID metadata. A token whose `jku` points
elsewhere is refused rather than followed, so a forged token cannot name its own key server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import jwt

from ...common.errors import Forbidden, PolicyDenied
from ...common.release_policy import ReleasePolicy, normalize_authority
from .jwks import JwksCache

CLOCK_SKEW_S = 30
ALGORITHMS = ["RS256"]


class AttestationTokenError(Forbidden):
    code = "AttestationTokenInvalid"


def _origin(url: str) -> str:
    parts = urlsplit(normalize_authority(url))
    return f"{parts.scheme}://{parts.netloc}"


async def verify_attestation_token(token: str, policy: ReleasePolicy, jwks: JwksCache) -> dict[str, Any]:
    """The token's claims, once its signature, issuer and lifetime check out and the policy holds."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AttestationTokenError("target: not a JWT attestation token") from None
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
    key = await jwks.key(jwks_url, header.get("kid"))
    if key is None:
        raise AttestationTokenError(f"target: signing key {header.get('kid')!r} is not one of {authority}'s keys")
    try:
        claims = jwt.decode(token, key, algorithms=ALGORITHMS, leeway=CLOCK_SKEW_S,
                            options={"require": ["exp", "iss"], "verify_aud": False})
    except jwt.ExpiredSignatureError:
        raise AttestationTokenError("target: the attestation token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AttestationTokenError("target: the attestation token is not valid yet (nbf)") from None
    except jwt.InvalidSignatureError:
        raise AttestationTokenError("target: the attestation token's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise AttestationTokenError(f"target: the attestation token is not valid: {exc}") from None
    policy.evaluate(issuer, claims)
    return claims
