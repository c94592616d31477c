"""The OIDC issuer's API: its discovery document and keys (under `/oidc` and, as the reference serves them,
`/app/oidc`), and the tokens it signs for a room with consent, which federates them as client assertions."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ...common.errors import BadRequest
from . import schemas
from .deps import Cgs, ReleaseRoomAuth

router = APIRouter()
# A JWT time: seconds since the epoch, within what a JWT library and a 64-bit clock can hold.
EpochSeconds = Annotated[int, Query(ge=0, lt=2**62)]


@router.post("/app/contracts/{contract_id}/oauth/token", response_model=None, openapi_extra=schemas.ROOM)
async def oauth_token(contract_id: str, cgs: Cgs, room: ReleaseRoomAuth, sub: str = "", tid: str = "", aud: str = "",
                      iss: str = "", jti: str = "", iat: EpochSeconds | None = None, nbf: EpochSeconds | None = None,
                      exp: EpochSeconds | None = None) -> dict[str, str]:
    # The query is the endpoint's (not the room dependency's), so FastAPI checks it once the room has attested.
    missing = [name for name, value in (("sub", sub), ("tid", tid), ("aud", aud)) if not value]
    if missing:
        raise BadRequest(f"Value for {missing[0]} is invalid.", code="InvalidInput")
    now = int(time.time())
    claims = {"iss": iss or cgs.issuer.issuer, "sub": sub, "aud": aud, "tid": tid, "iat": iat or now,
              "nbf": nbf or now, "exp": exp or now + cgs.config.token_lifetime_s, "jti": jti or uuid.uuid4().hex}
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
