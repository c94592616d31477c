"""Signing the party in (`--entra`): OIDC's authorization code flow with PKCE against the Entra stand-in (or
Entra), from the workspace, a public client on the party's machine. The ID token's nonce is the thumbprint
of the workspace's own key, so the token vouches for binding that key and no other (CGS checks it when the
party accepts an invitation). The ID token is verified here too before anything is kept."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from ..common.transports import http_transport
from .deps import PartyDep
from .errors import FieldError
from .party import EntraSettings, Party

router = APIRouter(prefix="/api", tags=["sign-in"])


def key_thumbprint(cert: x509.Certificate) -> str:
    """base64url(SHA-256(SubjectPublicKeyInfo)) of the workspace's key: the nonce CGS expects."""
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _entra(party: Party) -> EntraSettings:
    if party.mode != "entra" or party.entra is None:
        raise FieldError.one(None, "this workspace acts with a member certificate (--identity); it does not sign "
                                   "in", http_status=409)
    return party.entra


def _redirect_uri(party: Party) -> str:
    return party.base_url.rstrip("/") + "/api/signin/callback"


@router.get("/signin")
def signin(party: PartyDep) -> RedirectResponse:
    entra = _entra(party)
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = party.signins.add(verifier)
    query = urlencode({"client_id": entra.client_id, "response_type": "code", "redirect_uri": _redirect_uri(party),
                       "scope": "openid profile email", "state": state, "nonce": key_thumbprint(party.identity.cert),
                       "code_challenge": challenge, "code_challenge_method": "S256", "prompt": "login"})
    return RedirectResponse(f"{entra.authority.rstrip('/')}/oauth2/v2.0/authorize?{query}", status_code=302)


@router.get("/signin/callback")
def signin_callback(party: PartyDep, state: str = "", code: str = "", error: str = "",
                    error_description: str = "") -> RedirectResponse:
    entra = _entra(party)
    if error:
        raise FieldError.one(None, f"sign-in refused: {error}: {error_description[:200]}", http_status=401)
    verifier = party.signins.take(state[:64])
    if verifier is None:
        raise FieldError.one("state", "no sign-in of this workspace is under way with this state (expired, used, "
                                      "or started elsewhere)", http_status=400)
    if not code or len(code) > 2048:
        raise FieldError.one("code", "the sign-in answered no code", http_status=400)
    with httpx.Client(transport=http_transport(party.ca_bundle), timeout=15.0) as http:
        try:
            answer = http.post(f"{entra.authority.rstrip('/')}/oauth2/v2.0/token", data={
                "grant_type": "authorization_code", "code": code, "client_id": entra.client_id,
                "redirect_uri": _redirect_uri(party), "code_verifier": verifier})
        except httpx.HTTPError as exc:
            raise FieldError.one(None, f"cannot reach the sign-in service: {exc}", http_status=502) from None
        if answer.status_code != 200:
            detail = answer.json().get("error_description", "") if answer.headers.get(
                "content-type", "").startswith("application/json") else answer.text
            raise FieldError.one(None, f"the sign-in service refused the code: {str(detail)[:200]}",
                                 http_status=401)
        id_token = answer.json().get("id_token")
        claims = _verified(http, entra, str(id_token), key_thumbprint(party.identity.cert))
    party.save_bound_identity({"email": str(claims.get("email") or claims.get("preferred_username") or "").lower(),
                               "oid": claims.get("oid"), "tid": claims.get("tid"), "issuer": entra.issuer,
                               "idToken": id_token, "expiresAt": claims.get("exp")})
    return RedirectResponse("/", status_code=302)


def _verified(http: httpx.Client, entra: EntraSettings, token: str, nonce: str) -> dict[str, Any]:
    try:
        config = http.get(entra.issuer + "/.well-known/openid-configuration").json()
        jwks = http.get(config["jwks_uri"]).json()
        header = jwt.get_unverified_header(token)
        key = next(jwt.PyJWK(k).key for k in jwks["keys"] if k.get("kid") == header.get("kid"))
        claims = jwt.decode(token, key, algorithms=["RS256"], audience=entra.client_id, issuer=entra.issuer,
                            options={"require": ["exp", "iat", "aud", "iss", "nonce"]})
    except (httpx.HTTPError, ValueError, KeyError, StopIteration, jwt.PyJWTError) as exc:
        raise FieldError.one(None, f"the ID token does not verify: {str(exc)[:200] or type(exc).__name__}",
                             http_status=401) from None
    if claims.get("nonce") != nonce:
        raise FieldError.one(None, "the ID token was not issued for this workspace's key (nonce)", http_status=401)
    return claims


@router.post("/signout", status_code=204)
def signout(party: PartyDep) -> Response:
    _entra(party)
    party.forget_bound_identity()
    return Response(status_code=204)
