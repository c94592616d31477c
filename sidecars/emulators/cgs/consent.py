"""Execution consent and the runtime options' status: members enable or disable execution of a contract and
check the status of execution, logging and telemetry; rooms ask the same before they run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ...common.errors import NotFound
from . import schemas
from .deps import Cgs, CgsState, MemberAuth, consent_checking_room_auth
from .store import RUNTIME_OPTIONS

router = APIRouter()


@router.post("/app/contracts/{contract_id}/execution/{verb}", response_class=Response)
async def set_execution(contract_id: str, verb: str, cgs: Cgs, caller: MemberAuth) -> Response:
    if verb not in ("enable", "disable"):
        raise NotFound(f"no execution action {verb!r}: use enable or disable")
    with cgs.change():
        cgs.store.set_execution(contract_id, caller.who, verb + "d")
        cgs.record(contract_id, caller.who, f"execution_{verb}")
    return Response(status_code=200)


@router.post("/app/contracts/{contract_id}/checkstatus/{option}", response_model=None)
async def check_status(contract_id: str, option: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    return _status(cgs, contract_id, option)


# A room's consent check, at CGS's path (the older `consentcheck/{option}` is gone from CGS, and from here).
# Unlike the other routes it answers through a response model, as it always has (FastAPI then writes the JSON
# with pydantic).
@router.post("/app/contracts/{contract_id}/runtimeoptions/{option}/status",
             dependencies=[Depends(consent_checking_room_auth)], openapi_extra=schemas.ROOM)
async def room_consent(contract_id: str, option: str, cgs: Cgs) -> dict[str, Any]:
    return _status(cgs, contract_id, option)


def _status(cgs: CgsState, contract_id: str, option: str) -> dict[str, Any]:
    if option == "execution":
        return cgs.store.execution_status(contract_id)
    if option in RUNTIME_OPTIONS:
        return cgs.store.option_status(contract_id, option)
    raise NotFound(f"no runtime option {option!r}: execution, logging or telemetry")
