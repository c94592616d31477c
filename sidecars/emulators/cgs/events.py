"""The audit log of a contract under `/app/contracts/{id}/events`: rooms append signed events, members read
them as CGS serves them (by id and scope, a page at a time), each page with the chain's head."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

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
    id: str
    scope: str
    chain: bool
    max_seqno_per_page: int


@router.get("/app/contracts/{contract_id}/events", response_model=None)
async def get_events(contract_id: str, cgs: Cgs, _: MemberAuth, id: str | None = None, scope: str | None = None,
                     from_seqno: int | None = None, to_seqno: int | None = None,
                     max_seqno_per_page: int = 2000, chain: bool = False) -> dict[str, Any]:
    """CGS's defaults: the events of `id` (the contract id unless given) in `scope` (the unscoped ones unless
    given); without a range, the latest such event; with one, a page of at most `max_seqno_per_page` + 1
    seqnos from `from_seqno` (default 1) to `to_seqno` (default: that id's last event) and a `nextLink` to the
    rest. The stand-in adds `chain=true` (every event of the contract, whatever its id and scope) and, on each
    page, the chain's `head`: what a member needs to check the hash chain."""
    # The query is the endpoint's, not the member dependency's: FastAPI checks an endpoint's parameters only once
    # its dependencies have run, so an unauthenticated caller is refused (401) before its query is parsed.
    query = EventsQuery(contract_id if id is None else id, scope or "", chain, max_seqno_per_page)
    cgs.store.contract(contract_id)
    head = cgs.audit.head(contract_id)
    event_id, event_scope = (None, None) if query.chain else (query.id, query.scope)
    if from_seqno is None and to_seqno is None:
        latest = cgs.audit.latest(contract_id, event_id=event_id, scope=event_scope)
        return {"value": [_event_view(latest)] if latest else [], "head": head}
    start = 1 if from_seqno is None else from_seqno
    if to_seqno is None:
        last = cgs.audit.latest(contract_id, event_id=event_id, scope=event_scope)
        to_seqno = last["seqno"] if last else head["seqno"]
    if to_seqno < start:
        raise BadRequest("to_seqno must be >= from_seqno")
    if to_seqno > head["seqno"]:
        raise BadRequest(f"End of range must be committed: to_seqno {to_seqno} is beyond the last event "
                         f"({head['seqno']})")
    if query.max_seqno_per_page < 1:
        raise BadRequest("max_seqno_per_page must be at least 1")
    page_end = min(to_seqno, start + query.max_seqno_per_page)
    # Read from the database a page at a time, not the whole chain per request.
    page = [_event_view(e) for e in cgs.audit.page(contract_id, start, page_end, event_id=event_id,
                                                   scope=event_scope)]
    result: dict[str, Any] = {"value": page, "head": head}
    if page_end < to_seqno:
        result["nextLink"] = _next_link(contract_id, query, page_end + 1, to_seqno)
    return result


def _next_link(contract_id: str, query: EventsQuery, start: int, end: int) -> str:
    link = f"/app/contracts/{quote(contract_id)}/events?from_seqno={start}&to_seqno={end}" \
           f"&id={quote(query.id)}&scope={quote(query.scope)}&max_seqno_per_page={query.max_seqno_per_page}"
    return link + ("&chain=true" if query.chain else "")


def _event_view(event: dict[str, Any]) -> dict[str, Any]:
    iso = dt.datetime.fromtimestamp(int(event["timestamp"]) / 1000, dt.UTC).isoformat(timespec="milliseconds")
    return {**event, "timestamp_iso": iso.replace("+00:00", "Z")}
