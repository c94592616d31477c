"""Member documents: members put and read drafts (a proposal accepts them, see `members`); a room with
consent gets an accepted document of its contract wrapped to its key."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ...common.errors import BadRequest, NotFound
from . import schemas
from .deps import Cgs, MemberAuth, ReleaseRoomAuth

router = APIRouter()


@router.put("/app/memberdocuments/{document_id}", response_class=Response, openapi_extra=schemas.DOCUMENT)
async def put_document(document_id: str, cgs: Cgs, caller: MemberAuth) -> Response:
    data = caller.json()
    if not data.get("contractId") or not isinstance(data["contractId"], str):
        raise BadRequest("ContractId must be specified in document payload.", code="ContractIdMissing")
    if "data" not in data:
        raise BadRequest("data key must be present in document payload.", code="DataMissing")
    with cgs.change():
        document = cgs.store.put_document(document_id, data["contractId"], data["data"], data.get("version"))
        cgs.record(data["contractId"], caller.who, "put_document", documentId=document_id,
                   version=document["version"])
    return Response(status_code=200)


@router.get("/app/memberdocuments/{document_id}", response_model=None)
async def get_document(document_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    document = cgs.store.state.documents.get(document_id)
    if document is None:
        raise NotFound("A document with the specified id was not found.", code="DocumentNotFound")
    return document


# A room's release, at CGS's path (the older `acceptedMemberDocuments/{id}` is gone from CGS, and from here).
@router.post("/app/contracts/{contract_id}/memberdocuments/accepted/{document_id}", response_model=None,
             openapi_extra=schemas.ROOM)
async def release_document(contract_id: str, document_id: str, cgs: Cgs, room: ReleaseRoomAuth) -> dict[str, str]:
    document = cgs.store.state.documents.get(document_id)
    if document is None or document["state"] != "Accepted" or document["contractId"] != contract_id:
        raise NotFound("A document with the specified id was not found or has not been accepted.",
                       code="DocumentNotFound")
    cgs.audit.append(contract_id, "cgs", "release", {"action": "release_document", "documentId": document_id})
    return room.wrapped(json.dumps(document).encode())
