"""`/api/me`, `/api/collaborations`: the contracts the party is a member of, their members and the party's
own execution consent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..governance.member_client import CgsRequestFailed
from . import views
from .deps import PartyDep, contract_id
from .errors import FieldError
from .models import ConsentRequest
from .party import Party

router = APIRouter(prefix="/api", tags=["collaborations"])


def my_contracts(party: Party) -> tuple[list[str], list[dict[str, Any]], str | None]:
    client = party.client()
    members = client.members()
    me = party.member_name(members)
    if me is None:
        return [], members, None
    mine = []
    for cid in client.contracts():
        if me in views.contract_member_names(client.contract(cid), members):
            mine.append(cid)
    return mine, members, me


def require_collaboration(party: Party, collaboration_id: str) -> tuple[str, list[dict[str, Any]], str]:
    """The contract id, the consortium's members and the party's name, when the party is a member of the
    contract; 404 otherwise (the same answer for a contract that does not exist)."""
    cid = contract_id(collaboration_id)
    client = party.client()
    members = client.members()
    me = party.member_name(members)
    try:
        contract = client.contract(cid)
    except CgsRequestFailed as exc:
        if exc.http_status in (400, 404):
            contract = None
        else:
            raise
    if me is None or contract is None or me not in views.contract_member_names(contract, members):
        raise FieldError.one("collaborationId", f"you are in no collaboration {cid!r}", http_status=404)
    return cid, members, me


@router.get("/me")
def me(party: PartyDep) -> dict[str, Any]:
    bound = party.bound_identity()
    signed_in = party.mode == "certificate" or bound is not None
    name = None
    if signed_in:
        try:
            name = party.member_name()
        except CgsRequestFailed:
            name = None
    identity = {k: bound.get(k) for k in ("email", "oid", "tid", "issuer")} if bound else None
    return {"memberId": party.identity.member_id, "name": name, "mode": party.mode, "identity": identity,
            "signedIn": signed_in, "cgs": party.cgs_url}


@router.get("/collaborations")
def list_collaborations(party: PartyDep) -> dict[str, Any]:
    mine, members, _me = my_contracts(party)
    room = party.room.url if party.room else None
    return {"value": [views.collaboration(party.client(), cid, members, room) for cid in mine]}


@router.get("/collaborations/{collaboration_id}")
def get_collaboration(collaboration_id: str, party: PartyDep) -> dict[str, Any]:
    cid, members, _me = require_collaboration(party, collaboration_id)
    return views.collaboration(party.client(), cid, members, party.room.url if party.room else None)


@router.post("/collaborations/{collaboration_id}/consent")
def set_consent(collaboration_id: str, body: ConsentRequest, party: PartyDep) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    client = party.client()
    client.set_execution(cid, body.enabled)
    status = client.check_status(cid, "execution")
    return {"execution": status.get("status"), "reason": (status.get("reason") or {}).get("message")}


@router.get("/collaborations/{collaboration_id}/members")
def list_members(collaboration_id: str, party: PartyDep) -> dict[str, Any]:
    cid, members, _me = require_collaboration(party, collaboration_id)
    named = set(views.contract_member_names(party.client().contract(cid), members))
    return {"value": [views.member_view(m, party.identity.member_id) for m in members
                      if (m.get("memberData") or {}).get("identifier") in named]}
