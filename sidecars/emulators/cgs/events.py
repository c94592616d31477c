"""The audit log of a contract under `/app/contracts/{id}/events`: rooms append signed events, members read
them a page at a time, each page with the chain's head."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from ...common.errors import BadRequest
from . import schemas
from .deps import Cgs, MemberAuth, auditing_room_auth
from .room import Room

router = APIRouter()


@router.put("/app/contracts/{contract_id}/events", status_code=204, response_class=Response,
            openapi_extra=schemas.ROOM)
async def put_event(contract_id: str, cgs: Cgs, room: Annotated[Room, Depends(auditing_room_auth)],
                    id: str | None = None, scope: str | None = None) -> Response:
    cgs.audit.append(contract_id, scope or "", id or contract_id, room.data, room.timestamp_ms)
    return Response(status_code=204)


@dataclass(frozen=True)
class EventsQuery:
    id: str | None
    scope: str | None
    from_seqno: int | None
    to_seqno: int | None
    max_seqno_per_page: int


@router.get("/app/contracts/{contract_id}/events", response_model=None)
async def get_events(contract_id: str, cgs: Cgs, _: MemberAuth, id: str | None = None, scope: str | None = None,
                     from_seqno: int | None = None, to_seqno: int | None = None,
                     max_seqno_per_page: int = 2000) -> dict[str, Any]:
    # The query is the endpoint's, not the member dependency's: FastAPI checks an endpoint's parameters only once
    # its dependencies have run, so an unauthenticated caller is refused (401) before its query is parsed.
    query = EventsQuery(id, scope, from_seqno, to_seqno, max_seqno_per_page)
    cgs.store.contract(contract_id)
    head = cgs.audit.head(contract_id)
    if query.from_seqno is None and query.to_seqno is None:
        latest = cgs.audit.latest(contract_id, event_id=query.id, scope=query.scope)
        return {"value": [_event_view(latest)] if latest else [], "head": head}
    start = query.from_seqno or 1
    end = query.to_seqno if query.to_seqno is not None else head["seqno"]
    if query.to_seqno is not None and end < start:
        raise BadRequest("to_seqno must be >= from_seqno")
    if query.max_seqno_per_page < 1:
        raise BadRequest("max_seqno_per_page must be at least 1")
    page_end = min(end, start + query.max_seqno_per_page - 1)
    # Read from the database a page at a time, not the whole chain per request.
    page = [_event_view(e) for e in cgs.audit.page(contract_id, start, page_end, event_id=query.id,
                                                   scope=query.scope)]
    result: dict[str, Any] = {"value": page, "head": head}
    if page_end < end:
        result["nextLink"] = _next_link(contract_id, query, page_end + 1, end)
    return result


def _next_link(contract_id: str, query: EventsQuery, start: int, end: int) -> str:
    link = f"/app/contracts/{contract_id}/events?from_seqno={start}&to_seqno={end}" \
           f"&max_seqno_per_page={query.max_seqno_per_page}"
    link += f"&id={query.id}" if query.id is not None else ""
    link += f"&scope={query.scope}" if query.scope is not None else ""
    return link


def _event_view(event: dict[str, Any]) -> dict[str, Any]:
    iso = dt.datetime.fromtimestamp(int(event["timestamp"]) / 1000, dt.UTC).isoformat(timespec="milliseconds")
    return {**event, "timestamp_iso": iso.replace("+00:00", "Z")}
