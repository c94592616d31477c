"""Execution consent and the runtime options' status, at CGS's paths: members enable or disable execution of a
contract (`runtimeoptions/execution/enable|disable`) and check the status of execution, logging and telemetry
(`runtimeoptions/{option}/status`); rooms ask the same, attesting, before they run.

The stand-in adds the same per analytics document (`memberdocuments/{id}/runtimeoptions/execution/...`): the
owners of the data a dataset or query document describes or reads may revoke it (see `analytics`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ...common.errors import BadRequest
from ...common.http import client_certificate
from . import schemas
from .deps import Cgs, CgsState, MemberAuth, authenticate_member, consent_checking_room_auth
from .store import RUNTIME_OPTIONS

router = APIRouter()


async def set_execution(contract_id: str, option: str, verb: str, cgs: CgsState, who: str) -> Response:
    if option != "execution":
        raise BadRequest(f"The option value {option[:40]} is invalid. Use proposals for options other than "
                         "'execution'.", code="InvalidOption")
    with cgs.change():
        cgs.store.set_execution(contract_id, who, verb + "d")
        cgs.record(contract_id, who, f"execution_{verb}")
    return Response(status_code=200)


@router.post("/app/contracts/{contract_id}/runtimeoptions/{option}/enable", response_class=Response)
async def enable_option(contract_id: str, option: str, cgs: Cgs, caller: MemberAuth) -> Response:
    return await set_execution(contract_id, option, "enable", cgs, caller.who)


@router.post("/app/contracts/{contract_id}/runtimeoptions/{option}/disable", response_class=Response)
async def disable_option(contract_id: str, option: str, cgs: Cgs, caller: MemberAuth) -> Response:
    return await set_execution(contract_id, option, "disable", cgs, caller.who)


async def member_or_room(contract_id: str, request: Request, cgs: Cgs) -> None:
    """CGS's status check takes a member (member_cert) or, unauthenticated, a room that attests: a caller that
    presented a certificate (or a signed header) is checked as a member, anyone else must attest."""
    if client_certificate(request.scope) is not None or request.headers.get("authorization"):
        await authenticate_member(request, cgs)
        return
    await consent_checking_room_auth(contract_id, request, cgs)


# Unlike the other routes it answers through a response model, as it always has (FastAPI then writes the JSON
# with pydantic). The older spellings (`consentcheck/{option}`, `checkstatus/{option}`, `execution/{verb}`) are
# gone from CGS, and from here.
@router.post("/app/contracts/{contract_id}/runtimeoptions/{option}/status",
             dependencies=[Depends(member_or_room)], openapi_extra=schemas.ROOM)
async def option_status(contract_id: str, option: str, cgs: Cgs) -> dict[str, Any]:
    return _status(cgs, contract_id, option)


def _status(cgs: CgsState, contract_id: str, option: str) -> dict[str, Any]:
    if option == "execution":
        return cgs.store.execution_status(contract_id)
    if option in RUNTIME_OPTIONS:
        return cgs.store.option_status(contract_id, option)
    raise BadRequest(f"The option value {option[:40]} is invalid. Valid values are 'execution', 'logging' and "
                     "'telemetry'.", code="InvalidOption")


# -- per-document execution consent (analytics documents)
async def set_document_execution(contract_id: str, document_id: str, verb: str, cgs: CgsState, who: str) -> Response:
    with cgs.change():
        cgs.store.set_document_execution(contract_id, document_id, who, verb + "d")
        cgs.record(contract_id, who, f"document_execution_{verb}", documentId=document_id)
    return Response(status_code=200)


@router.post("/app/contracts/{contract_id}/memberdocuments/{document_id}/runtimeoptions/execution/enable",
             response_class=Response)
async def enable_document(contract_id: str, document_id: str, cgs: Cgs, caller: MemberAuth) -> Response:
    return await set_document_execution(contract_id, document_id, "enable", cgs, caller.who)


@router.post("/app/contracts/{contract_id}/memberdocuments/{document_id}/runtimeoptions/execution/disable",
             response_class=Response)
async def disable_document(contract_id: str, document_id: str, cgs: Cgs, caller: MemberAuth) -> Response:
    return await set_document_execution(contract_id, document_id, "disable", cgs, caller.who)


async def member_or_contract_room(contract_id: str, request: Request, cgs: Cgs) -> None:
    """As `member_or_room`, but a room must name a contract that exists (404 otherwise): an anonymous caller
    learns nothing of contracts it cannot name."""
    if client_certificate(request.scope) is None and not request.headers.get("authorization"):
        cgs.store.contract(contract_id)
    await member_or_room(contract_id, request, cgs)


@router.post("/app/contracts/{contract_id}/memberdocuments/{document_id}/runtimeoptions/execution/status",
             dependencies=[Depends(member_or_contract_room)], response_model=None, openapi_extra=schemas.ROOM)
async def document_status(contract_id: str, document_id: str, cgs: Cgs) -> dict[str, Any]:
    return cgs.store.document_execution_status(contract_id, document_id)
