"""Contract secrets: members put them and list their ids; a room with consent gets one wrapped to its key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...common.errors import NotFound
from . import schemas
from .deps import Cgs, MemberAuth, ReleaseRoomAuth

router = APIRouter()


@router.put("/app/contracts/{contract_id}/secrets/{secret_name}", response_model=None,
            openapi_extra=schemas.SECRET)
async def put_secret(contract_id: str, secret_name: str, cgs: Cgs, caller: MemberAuth) -> dict[str, Any]:
    with cgs.change():
        secret_id = cgs.store.put_secret(contract_id, caller.who, secret_name, str(caller.json().get("value") or ""))
        cgs.record(contract_id, caller.who, "put_secret", secretId=secret_id)
    return {"secretId": secret_id}


@router.get("/app/contracts/{contract_id}/secrets", response_model=None)
async def list_secrets(contract_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    cgs.store.contract(contract_id)
    return {"value": [{"secretId": s} for s in cgs.store.state.secrets.get(contract_id, {})]}


@router.post("/app/contracts/{contract_id}/secrets/{secret_id}", response_model=None, openapi_extra=schemas.ROOM)
async def release_secret(contract_id: str, secret_id: str, cgs: Cgs, room: ReleaseRoomAuth) -> dict[str, str]:
    value = cgs.store.state.secrets.get(contract_id, {}).get(secret_id)
    if value is None:
        raise NotFound(f"A secret with the specified id '{secret_id}' was not found.", code="SecretNotFound")
    cgs.audit.append(contract_id, "cgs", "release", {"action": "release_secret", "secretId": secret_id})
    return room.wrapped(value.encode())
