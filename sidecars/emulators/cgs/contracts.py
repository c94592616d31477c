"""The member-facing contract API under `/app/contracts`, as CGS serves it: drafting contracts and reading them
with their clean-room policy and deployment spec (all decided by proposals, see `members`).

CGS reads a contract, its policy and its deployment spec with POST (no body); lists answer `{value: [...]}`.
`POST …/deploymentspec` needs no credentials, as in CGS: whoever deploys or checks a deployment (an operator,
`ccr aci run`) reads what the members accepted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ...common.errors import BadRequest
from . import paging, schemas
from .deps import Cgs, MemberAuth

router = APIRouter()
CONTRACT_STATES = ("Draft", "Proposed", "Accepted")


def js_falsy(value: Any) -> bool:
    """What CGS's `if (!data)` refuses: absent, null, false, 0 or "" (an empty object or list is data)."""
    return value is None or value is False or value == "" or (type(value) in (int, float) and value == 0)


@router.get("/app/contracts", response_model=None)
async def list_contracts(cgs: Cgs, _: MemberAuth, state: str | None = None, skiptoken: paging.SkipToken = None,
                         maxpagesize: paging.MaxPageSize = None) -> dict[str, Any]:
    if state is not None and state not in CONTRACT_STATES:
        raise BadRequest("The state query parameter must be either 'Draft', 'Accepted' or 'Proposed'.",
                         code="InvalidParameter")

    def view(contract_id: str, _: Any) -> dict[str, str] | None:
        return {"id": contract_id} if state is None or cgs.store.contract_view(contract_id)["state"] == state else None
    return paging.listing(cgs.store.db, "contracts", "/app/contracts", skiptoken=skiptoken, maxpagesize=maxpagesize,
                          view=view, query={"state": state} if state else None)


@router.put("/app/contracts/{contract_id}", response_class=Response, openapi_extra=schemas.CONTRACT)
async def put_contract(contract_id: str, cgs: Cgs, caller: MemberAuth) -> Response:
    data = caller.json()
    if js_falsy(data.get("data")):
        raise BadRequest("data key must be present in contract payload.", code="DataMissing")
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        raise BadRequest("version: expected a string", code="InvalidInput")
    with cgs.change():
        contract = cgs.store.put_contract(contract_id, data["data"], version)
        cgs.record(contract_id, caller.who, "put_contract", version=contract["version"])
    return Response(status_code=200)


@router.post("/app/contracts/{contract_id}", response_model=None)
async def get_contract(contract_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    return cgs.store.contract_view(contract_id)


@router.post("/app/contracts/{contract_id}/deploymentspec", response_model=None)
async def get_deployment_spec(contract_id: str, cgs: Cgs) -> dict[str, Any]:
    return cgs.store.deployment_spec(contract_id)


@router.post("/app/contracts/{contract_id}/cleanroompolicy", response_model=None)
async def get_policy(contract_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    """CGS answers for any contract id (an unknown one has no policy and no proposals)."""
    open_ids = [p["proposalId"] for p in cgs.store.open_proposals() if any(
        a["name"] == "set_clean_room_policy" and a["args"].get("contractId") == contract_id for a in p["actions"])]
    return {"proposalIds": open_ids, "policy": cgs.store.state.policies.get(contract_id, {})}
