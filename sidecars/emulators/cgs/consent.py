"""Execution consent and the runtime options' status: members enable or disable execution of a contract and
check the status of execution, logging and telemetry; rooms ask the same before they run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ...common.errors import NotFound
from ...common.http import client_certificate
from . import schemas
from .deps import Cgs, CgsState, MemberAuth, authenticate_member, consent_checking_room_auth
from .store import RUNTIME_OPTIONS

router = APIRouter()


# CGS's paths (app.json): a member's own switch is `runtimeoptions/execution/{enable,disable}` (cgs-client's
# ContractsRuntimeOptionsController), and one `runtimeoptions/{option}/status` answers both members (by their
# certificate) and rooms (by their attestation). The older `execution/{verb}` and `checkstatus/{option}` are gone.
async def set_execution(contract_id: str, request: Request, cgs: Cgs, caller: MemberAuth) -> Response:
    verb = request.url.path.rsplit("/", 1)[1]
    with cgs.change():
        cgs.store.set_execution(contract_id, caller.who, verb + "d")
        cgs.record(contract_id, caller.who, f"execution_{verb}")
    return Response(status_code=200)


for verb in ("enable", "disable"):
    router.add_api_route(f"/app/contracts/{{contract_id}}/runtimeoptions/execution/{verb}", set_execution,
                         methods=["POST"], response_class=Response)


async def member_or_room(contract_id: str, request: Request, cgs: Cgs) -> None:
    """A caller presenting a certificate (or, when allowed, the legacy header) is a member asking; anyone else
    must be a room and attest."""
    if client_certificate(request.scope) is not None or request.headers.get("authorization"):
        await authenticate_member(request, cgs)
    else:
        await consent_checking_room_auth(contract_id, request, cgs)


# Unlike the other routes it answers through a response model, as it always has (FastAPI then writes the JSON
# with pydantic).
@router.post("/app/contracts/{contract_id}/runtimeoptions/{option}/status",
             dependencies=[Depends(member_or_room)], openapi_extra=schemas.ROOM)
async def option_status(contract_id: str, option: str, cgs: Cgs) -> dict[str, Any]:
    return _status(cgs, contract_id, option)


def _status(cgs: CgsState, contract_id: str, option: str) -> dict[str, Any]:
    if option == "execution":
        return cgs.store.execution_status(contract_id)
    if option in RUNTIME_OPTIONS:
        return cgs.store.option_status(contract_id, option)
    raise NotFound(f"no runtime option {option!r}: execution, logging or telemetry")
