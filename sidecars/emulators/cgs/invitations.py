"""Members by identity: a member of a contract invites someone by e-mail; the invitee signs in with
the OIDC issuer the invitation names (the Entra stand-in: authorization code + PKCE) and accepts with the ID
token and a certificate of its own key; the consortium then admits that certificate with the usual
`set_member` proposal, whose `member_data.identity` may claim only the identity the invitation bound (see
`store`). From then on CGS accepts that party's requests signed with that key (COSE, mutual TLS), as any
member's: the identity is bound to a key the party holds, and no service ever holds it.

- `POST /app/contracts/{id}/invitations` (a member of the contract, mutual TLS) `{email, name, issuer, clientId}`
  → 201 the invitation; `GET` lists the contract's invitations (its members only).
- `GET /app/invitations/{invitationId}` → the invitation (the id is the e-mailed link's secret); once accepted it
  carries the bound `certificate` (public), which the admitting `set_member` proposes.
- `POST /app/invitations/{invitationId}:accept` `{idToken, certificate}` → the invitation, Accepted. The ID token
  must verify with the issuer's published keys (its OIDC discovery document, over HTTPS), be for the
  invitation's client id, unexpired, name the invited e-mail, and carry as its nonce the thumbprint of the
  certificate's public key (`key_thumbprint`): a token is good for binding the key it was asked for, and no
  other, so a stolen token binds nothing of the thief's.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ...common.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from ...common.memberauth import member_id_of
from ...common.transports import http_transport
from . import identities
from .deps import Cgs, CgsState, MemberAuth, json_body

router = APIRouter()

EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
INVITATION_ID = re.compile(r"[A-Za-z0-9_-]{22}")
MAX_TOKEN_CHARS = 16 * 1024
MAX_CERT_CHARS = 8 * 1024
CLOCK_SKEW_S = 60


def key_thumbprint(cert: x509.Certificate) -> str:
    """base64url(SHA-256(SubjectPublicKeyInfo)): what a workspace asks the issuer to put in the ID token's nonce."""
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _text(body: dict[str, Any], key: str, pattern: re.Pattern[str], max_chars: int = 256) -> str:
    value = body.get(key)
    if not isinstance(value, str) or len(value) > max_chars or not pattern.fullmatch(value):
        raise BadRequest(f"{key}: expected {pattern.pattern}", code="InvalidInput")
    return value


def _issuer(body: dict[str, Any]) -> str:
    value = body.get("issuer")
    parts = urlsplit(value) if isinstance(value, str) and len(value) <= 512 else None
    if parts is None or parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise BadRequest("issuer: expected the https URL of an OIDC issuer", code="InvalidInput")
    return str(value).rstrip("/")


def _require_contract_member(cgs: CgsState, contract_id: str, who: str) -> None:
    cgs.store.contract(contract_id)
    if who not in cgs.store.contract_members(contract_id):
        raise Forbidden(f"{cgs.store.member_name(who)} is not a member of contract {contract_id!r}",
                        code="NotContractMember")


@router.post("/app/contracts/{contract_id}/invitations", status_code=201, response_model=None)
async def invite(contract_id: str, cgs: Cgs, caller: MemberAuth) -> dict[str, Any]:
    body = caller.json()
    _require_contract_member(cgs, contract_id, caller.who)
    if cgs.member_cert(caller.who) is None:
        raise Forbidden("only an active member invites", code="MemberNotActive")
    email = _text(body, "email", EMAIL).lower()
    name = _text(body, "name", NAME)
    client_id = _text(body, "clientId", CLIENT_ID)
    issuer = _issuer(body)
    if any(m.get("name") == name for m in cgs.store.state.members.values()):
        raise Conflict(f"a member named {name!r} already exists", code="MemberExists")
    with cgs.change():
        try:
            invitation = identities.create(cgs.store.db, {"contractId": contract_id, "email": email, "name": name,
                                                          "issuer": issuer, "clientId": client_id,
                                                          "invitedBy": cgs.store.member_name(caller.who)})
        except OverflowError as exc:
            raise Conflict(f"too many open invitations ({exc})", code="TooManyInvitations") from None
        cgs.record(contract_id, caller.who, "invite", email=email, name=name, issuer=issuer)
    return invitation


@router.get("/app/contracts/{contract_id}/invitations", response_model=None)
async def list_invitations(contract_id: str, cgs: Cgs, caller: MemberAuth) -> dict[str, Any]:
    _require_contract_member(cgs, contract_id, caller.who)
    return {"value": identities.of_contract(cgs.store.db, contract_id)}


def _invitation(cgs: CgsState, invitation_id: str) -> dict[str, Any]:
    invitation = identities.get(cgs.store.db, invitation_id) if INVITATION_ID.fullmatch(invitation_id) else None
    if invitation is None:
        raise NotFound("no such invitation", code="InvitationNotFound")
    return invitation


@router.get("/app/invitations/{invitation_id}", response_model=None)
async def get_invitation(invitation_id: str, cgs: Cgs) -> dict[str, Any]:
    return _invitation(cgs, invitation_id)


@router.post("/app/invitations/{invitation_id}:accept", response_model=None)
async def accept(invitation_id: str, cgs: Cgs, http_request: Request) -> dict[str, Any]:
    invitation = _invitation(cgs, invitation_id)
    if invitation["state"] != "Open":
        raise Conflict(f"the invitation is {invitation['state']}", code="InvitationNotOpen")
    if invitation["expiresAt"] < time.time():
        raise Conflict("the invitation has expired", code="InvitationExpired")
    request = json_body(await http_request.body())
    cert = _certificate(request.get("certificate"))
    token = request.get("idToken")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise BadRequest("idToken: expected the ID token the issuer gave at sign-in", code="InvalidInput")
    member_id = member_id_of(cert)
    if member_id in cgs.store.state.members:
        raise Conflict("this certificate is already a member's", code="MemberExists")
    claims = await run_in_threadpool(_verified_claims, cgs, invitation, token, cert)
    identity = {"issuer": invitation["issuer"], "tid": claims.get("tid"), "oid": claims.get("oid"),
                "email": invitation["email"]}
    with cgs.change():
        try:
            accepted = identities.bind(cgs.store.db, invitation_id, member_id, identity,
                                       cert.public_bytes(serialization.Encoding.PEM).decode())
        except LookupError as exc:
            raise Conflict(str(exc), code="InvitationNotOpen") from None
        cgs.audit.append(invitation["contractId"], "cgs", "governance", {
            "action": "accept_invitation", "member": invitation["name"], "email": invitation["email"],
            "memberId": member_id})
    return accepted


def _certificate(value: Any) -> x509.Certificate:
    if not isinstance(value, str) or len(value) > MAX_CERT_CHARS:
        raise BadRequest("certificate: expected a PEM certificate", code="InvalidInput")
    try:
        cert = x509.load_pem_x509_certificate(value.encode())
    except ValueError:
        raise BadRequest("certificate: expected a PEM certificate", code="InvalidInput") from None
    if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        raise BadRequest("certificate: a member key is an EC key", code="InvalidInput")
    return cert


def _verified_claims(cgs: CgsState, invitation: dict[str, Any], token: str, cert: x509.Certificate) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, RecursionError):
        raise Unauthorized("idToken: not a JWT", code="InvalidIdToken") from None
    if header.get("alg") not in ("RS256", "PS256", "ES256"):
        raise Unauthorized(f"idToken: signing algorithm {str(header.get('alg'))[:16]!r} is not accepted",
                           code="InvalidIdToken")
    key = _issuer_key(cgs, invitation["issuer"], header.get("kid"))
    try:
        claims = jwt.decode(token, key, algorithms=[header["alg"]], audience=invitation["clientId"],
                            issuer=invitation["issuer"], leeway=CLOCK_SKEW_S,
                            options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"idToken: {exc}", code="InvalidIdToken") from None
    email = str(claims.get("email") or claims.get("preferred_username") or "").lower()
    if email != invitation["email"]:
        raise Forbidden("the signed-in identity is not the one invited", code="IdentityMismatch")
    if claims.get("nonce") != key_thumbprint(cert):
        raise Forbidden("the ID token was not issued for this key (its nonce is not the key's thumbprint)",
                        code="KeyNotBound")
    return claims


def _issuer_key(cgs: CgsState, issuer: str, kid: Any):
    try:
        with httpx.Client(transport=http_transport(cgs.config.ca_bundle), timeout=5.0) as http:
            config = http.get(issuer + "/.well-known/openid-configuration")
            config.raise_for_status()
            jwks_uri = config.json()["jwks_uri"]
            if urlsplit(jwks_uri).scheme != "https":
                raise ValueError("jwks_uri is not https")
            keys = http.get(jwks_uri)
            keys.raise_for_status()
            entries = keys.json()["keys"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise Unauthorized(f"cannot read the signing keys of issuer {issuer}: {str(exc)[:200]}",
                           code="IssuerUnavailable") from None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("kid") == kid:
            try:
                return jwt.PyJWK(entry).key
            except jwt.PyJWTError:
                break
    raise Unauthorized(f"idToken: issuer {issuer} publishes no key {str(kid)[:64]!r}", code="InvalidIdToken")
