"""The member-facing contract API under `/app/contracts`: drafting contracts and reading them with their
clean-room policy and deployment spec (all decided by proposals, see `members`).

`GET …/deploymentspec` needs no signature, as in azure-cleanroom's CGS (whose table is public): whoever
deploys or checks a deployment (an operator, `ccr aci run`) reads what the members accepted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ...common.errors import BadRequest
from . import schemas
from .deps import Cgs, MemberAuth

router = APIRouter()


@router.get("/app/contracts", response_model=None)
async def list_contracts(cgs: Cgs, _: MemberAuth) -> list[dict[str, Any]]:
    return [{"id": cid, "state": c["state"]} for cid, c in cgs.store.state.contracts.items()]


@router.put("/app/contracts/{contract_id}", response_class=Response, openapi_extra=schemas.CONTRACT)
async def put_contract(contract_id: str, cgs: Cgs, caller: MemberAuth) -> Response:
    data = caller.json()
    if "data" not in data:
        raise BadRequest("data: required")
    with cgs.change():
        contract = cgs.store.put_contract(contract_id, data["data"], data.get("version"))
        cgs.record(contract_id, caller.who, "put_contract", version=contract["version"])
    return Response(status_code=200)


@router.get("/app/contracts/{contract_id}", response_model=None)
async def get_contract(contract_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    return cgs.store.contract(contract_id)


@router.get("/app/contracts/{contract_id}/deploymentspec", response_model=None)
async def get_deployment_spec(contract_id: str, cgs: Cgs) -> dict[str, Any]:
    return cgs.store.deployment_spec(contract_id)


@router.get("/app/contracts/{contract_id}/cleanroompolicy", response_model=None)
async def get_policy(contract_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    cgs.store.contract(contract_id)
    return {"claims": cgs.store.state.policies.get(contract_id, {})}
