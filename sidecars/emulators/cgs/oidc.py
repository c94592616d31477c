"""The OIDC issuer's API: its discovery document and keys (under `/oidc` and, as the reference serves them,
`/app/oidc`), and the tokens it signs for a room with consent, which federates them as client assertions."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request

from ...common.errors import BadRequest
from .deps import Cgs, ReleaseRoomAuth

router = APIRouter()


@router.post("/app/contracts/{contract_id}/oauth/token", response_model=None)
async def oauth_token(contract_id: str, request: Request, cgs: Cgs, room: ReleaseRoomAuth) -> dict[str, str]:
    query = request.query_params
    missing = [p for p in ("sub", "tid", "aud") if not query.get(p)]
    if missing:
        raise BadRequest(f"Value for {missing[0]} is invalid.", code="InvalidInput")
    now = int(time.time())
    claims = {"iss": query.get("iss") or cgs.issuer.issuer, "sub": query["sub"], "aud": query["aud"],
              "tid": query["tid"], "iat": int(query.get("iat") or now), "nbf": int(query.get("nbf") or now),
              "exp": int(query.get("exp") or now + cgs.config.token_lifetime_s),
              "jti": query.get("jti") or uuid.uuid4().hex}
    cgs.audit.append(contract_id, "cgs", "release", {"action": "issue_token", "sub": claims["sub"],
                                                     "aud": claims["aud"], "tid": claims["tid"]})
    return room.wrapped(cgs.issuer.sign(claims).encode())


async def discovery(cgs: Cgs) -> dict[str, Any]:
    return cgs.issuer.discovery()


async def keys(cgs: Cgs) -> dict[str, Any]:
    return cgs.issuer.jwks()


for prefix in ("/oidc", "/app/oidc"):
    router.add_api_route(prefix + "/.well-known/openid-configuration", discovery, methods=["GET"], response_model=None)
    router.add_api_route(prefix + "/keys", keys, methods=["GET"], response_model=None)
