"""The OIDC issuer's API, as CGS serves it: enabled by an accepted `enable_oidc_issuer` proposal, its signing
key made when a member asks (`/app/oidc/generateSigningKey`), its state read at `/app/oidc/issuerInfo`; its
discovery document and keys (under `/app/oidc` and `/oidc`), and the tokens it signs for a room with consent,
which federates them as client assertions."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Query

from ...common.errors import BadRequest, CcrError
from . import schemas
from .deps import Cgs, CgsState, MemberAuth, ReleaseRoomAuth

router = APIRouter()
# A JWT time: seconds since the epoch, within what a JWT library and a 64-bit clock can hold.
EpochSeconds = Annotated[int, Query(ge=0, lt=2**62)]


def issuer_url(cgs: CgsState) -> str:
    """The URL the members proposed (`set_oidc_issuer_url`), else the stand-in's own `/oidc`."""
    return cgs.store.state.oidc.get("issuer", {}).get("issuerUrl") or cgs.issuer.issuer


@router.post("/app/contracts/{contract_id}/oauth/token", response_model=None, openapi_extra=schemas.ROOM)
async def oauth_token(contract_id: str, cgs: Cgs, room: ReleaseRoomAuth, sub: str = "", tid: str = "", aud: str = "",
                      iss: str = "", jti: str = "", iat: EpochSeconds | None = None, nbf: EpochSeconds | None = None,
                      exp: EpochSeconds | None = None) -> dict[str, str]:
    # The query is the endpoint's (not the room dependency's), so FastAPI checks it once the room has attested.
    missing = [name for name, value in (("sub", sub), ("tid", tid), ("aud", aud)) if not value]
    if missing:
        raise BadRequest(f"Value for {missing[0]} is invalid.", code="InvalidInput")
    now = int(time.time())
    claims = {"iss": iss or issuer_url(cgs), "sub": sub, "aud": aud, "tid": tid, "iat": iat or now,
              "nbf": nbf or now, "exp": exp or now + cgs.config.token_lifetime_s, "jti": jti or uuid.uuid4().hex}
    token = cgs.issuer.sign(claims)
    cgs.audit.append(contract_id, "cgs", "release", {"action": "issue_token", "sub": claims["sub"],
                                                     "aud": claims["aud"], "tid": claims["tid"]})
    return room.wrapped(token.encode())


@router.post("/app/oidc/generateSigningKey", response_model=None)
async def generate_signing_key(cgs: Cgs, _: MemberAuth) -> dict[str, str]:
    """A key for the request id the last accepted enable/rotate proposal set; asking again changes nothing."""
    issuer = cgs.store.state.oidc.get("issuer", {})
    if issuer.get("enabled") != "true":
        raise CcrError("Oidc issuer support has not been enabled.", code="OidcIssuerNotEnabled", http_status=405)
    request_id, kid = issuer["requestId"], f"{issuer['kid']}-{issuer['requestId']}"
    existing = cgs.store.state.oidc.get("signing_key", {})
    if existing.get("keyRequestId") == request_id:
        return {"reqId": request_id, "kid": existing["kid"]}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cgs.store.set_oidc_key(key_pem, kid)
    cgs.issuer.use_key(key_pem, kid)
    return {"reqId": request_id, "kid": kid}


@router.post("/app/oidc/issuerInfo", response_model=None)
async def issuer_info(cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    enabled = cgs.store.state.oidc.get("issuer", {}).get("enabled") == "true"
    return {"enabled": enabled, **({"issuerUrl": issuer_url(cgs)} if enabled else {})}


async def discovery(cgs: Cgs) -> dict[str, Any]:
    return cgs.issuer.discovery(issuer_url(cgs))


async def keys(cgs: Cgs) -> dict[str, Any]:
    return cgs.issuer.jwks()


for prefix in ("/oidc", "/app/oidc"):
    router.add_api_route(prefix + "/.well-known/openid-configuration", discovery, methods=["GET"], response_model=None)
    router.add_api_route(prefix + "/keys", keys, methods=["GET"], response_model=None)
