"""Member documents: members put and read drafts (a `set_member_document` proposal carrying the whole document
accepts them, see `members`); a room with consent gets an accepted document of its contract wrapped to its key."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import Response

from ...common.errors import BadRequest, NotFound
from . import paging, schemas
from .contracts import js_falsy
from .deps import Cgs, MemberAuth, ReleaseRoomAuth

router = APIRouter()


async def put_document(document_id: str, cgs: Cgs, caller: MemberAuth, contract_id: str | None = None) -> Response:
    data = caller.json()
    if not data.get("contractId") or not isinstance(data["contractId"], str):
        raise BadRequest("ContractId must be specified in document payload.", code="ContractIdMissing")
    if contract_id is not None and data["contractId"] != contract_id:
        raise BadRequest(f"the document's contractId is not {contract_id!r}", code="ContractIdMismatch")
    if js_falsy(data.get("data")):
        raise BadRequest("data key must be present in document payload.", code="DataMissing")
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        raise BadRequest("version: expected a string", code="InvalidInput")
    with cgs.change():
        document = cgs.store.put_document(document_id, data["contractId"], data["data"], version,
                                          data.get("labels"))
        cgs.record(data["contractId"], caller.who, "put_document", documentId=document_id,
                   version=document["version"])
    return Response(status_code=200)


async def get_document(document_id: str, cgs: Cgs, _: MemberAuth, contract_id: str | None = None) -> dict[str, Any]:
    document = cgs.store.document_view(document_id)
    if contract_id is not None and document["contractId"] != contract_id:
        raise NotFound("A document with the specified id was not found.", code="DocumentNotFound")
    return document


async def list_documents(cgs: Cgs, _: MemberAuth, contract_id: str | None = None,
                         skiptoken: paging.SkipToken = None, maxpagesize: paging.MaxPageSize = None) -> dict[str, Any]:
    path = "/app/memberdocuments" if contract_id is None else f"/app/contracts/{quote(contract_id)}/memberdocuments"
    return paging.listing(cgs.store.db, "documents", path, skiptoken=skiptoken, maxpagesize=maxpagesize,
                          view=lambda did, d: {"id": did} if contract_id in (None, d["contractId"]) else None)


# CGS serves member documents both on their own and under their contract; a read is GET on its own, POST under
# the contract.
for prefix, read in (("/app", "GET"), ("/app/contracts/{contract_id}", "POST")):
    router.add_api_route(prefix + "/memberdocuments/{document_id}", put_document, methods=["PUT"],
                         response_class=Response, openapi_extra=schemas.DOCUMENT)
    router.add_api_route(prefix + "/memberdocuments/{document_id}", get_document, methods=[read],
                         response_model=None)
    router.add_api_route(prefix + "/memberdocuments", list_documents, methods=["GET"], response_model=None)


# A room's release, at CGS's path (the older `acceptedMemberDocuments/{id}` is gone from CGS, and from here).
@router.post("/app/contracts/{contract_id}/memberdocuments/accepted/{document_id}", response_model=None,
             openapi_extra=schemas.ROOM)
async def release_document(contract_id: str, document_id: str, cgs: Cgs, room: ReleaseRoomAuth) -> dict[str, str]:
    document = cgs.store.state.documents.get(document_id)
    if document is None or document["state"] != "Accepted" or document["contractId"] != contract_id:
        raise NotFound("A document with the specified id was not found or has not been accepted.",
                       code="DocumentNotFound")
    cgs.audit.append(contract_id, "cgs", "release", {"action": "release_document", "documentId": document_id})
    return room.wrapped(json.dumps({"labels": {}, **document}).encode())
