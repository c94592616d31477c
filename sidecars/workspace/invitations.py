"""Invitations (members by identity): a member invites by e-mail; the invitee's workspace (`--entra`, signed in)
accepts, which has CGS bind the workspace's key to the identity; a member then admits it (proposes
`set_member` with that key and identity, and votes); once the consortium accepts, the new member activates."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter

from ..common.transports import http_transport
from ..governance.member_client import CgsRequestFailed
from .collaborations import my_contracts, require_collaboration
from .deps import PartyDep, checked
from .errors import FieldError
from .models import INVITATION_ID, InvitationRequest
from .party import Party

router = APIRouter(prefix="/api", tags=["invitations"])


def _invitation_id(value: str) -> str:
    return checked(value, INVITATION_ID, "invitationId")


def _cgs_public(party: Party, method: str, target: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request to CGS that presents no member certificate (the invitee is no member yet)."""
    with httpx.Client(base_url=party.cgs_url, transport=http_transport(party.ca_bundle), timeout=30.0) as http:
        try:
            response = http.request(method, target, json=body)
        except httpx.HTTPError as exc:
            raise FieldError.one(None, f"cannot reach CGS: {exc}", http_status=502) from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code >= 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else response.text[:200]
        raise FieldError.one(None, f"CGS refused: {message}", http_status=response.status_code
                             if response.status_code < 500 else 502)
    return answer


@router.post("/collaborations/{collaboration_id}/invitations", status_code=201)
def invite(collaboration_id: str, body: InvitationRequest, party: PartyDep) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    issuer = body.issuer or (party.entra.issuer if party.entra else None)
    client_id = body.clientId or (party.entra.client_id if party.entra else None)
    if not issuer or not client_id:
        raise FieldError.one("issuer", "which identity provider does the invitee sign in with? (give issuer and "
                                       "clientId, or start the workspace with --entra and --client-id)")
    return party.client().request("POST", f"/app/contracts/{quote(cid)}/invitations", {
        "email": body.email, "name": body.name, "issuer": issuer, "clientId": client_id})


@router.get("/invitations")
def list_invitations(party: PartyDep) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    contracts, _members, _me = my_contracts(party)
    for cid in contracts:
        found.extend(party.client().request("GET", f"/app/contracts/{quote(cid)}/invitations")["value"])
    return {"value": found}


@router.get("/invitations/{invitation_id}")
def get_invitation(invitation_id: str, party: PartyDep) -> dict[str, Any]:
    return _cgs_public(party, "GET", f"/app/invitations/{_invitation_id(invitation_id)}")


@router.post("/invitations/{invitation_id}/accept")
def accept(invitation_id: str, party: PartyDep) -> dict[str, Any]:
    bound = party.bound_identity()
    if party.mode != "entra":
        raise FieldError.one(None, "accepting an invitation binds a signed-in identity: start the workspace with "
                                   "--entra", http_status=409)
    if not bound or not bound.get("idToken"):
        raise FieldError.one(None, "sign in first (/api/signin)", http_status=401)
    return _cgs_public(party, "POST", f"/app/invitations/{_invitation_id(invitation_id)}:accept",
                       {"idToken": bound["idToken"], "certificate": party.identity.cert_pem})


@router.post("/invitations/{invitation_id}/admit")
def admit(invitation_id: str, party: PartyDep) -> dict[str, Any]:
    invitation = _cgs_public(party, "GET", f"/app/invitations/{_invitation_id(invitation_id)}")
    client = party.client()
    # Membership is the consortium's decision (every member the constitution counts votes), not the contract's.
    members = client.members()
    if party.member_name(members) is None:
        raise FieldError.one(None, "only a member admits a new member", http_status=403)
    if invitation.get("state") != "Accepted" or not invitation.get("certificate"):
        raise FieldError.one("invitationId", f"the invitation is {invitation.get('state')}: only an accepted one "
                                             "is admitted", http_status=409)
    if any(m.get("memberId") == invitation.get("memberId") for m in members):
        raise FieldError.one("invitationId", f"{invitation.get('name')} is already a member", http_status=409)
    # Each member admits by the same click: the first proposes, the others vote on that open proposal.
    proposal = _open_admission(party, invitation["certificate"]) or client.propose({"name": "set_member", "args": {
        "cert": invitation["certificate"],
        "member_data": {"identifier": invitation["name"], "identity": invitation["identity"]}}})
    if proposal["proposalState"] == "Open" and party.identity.member_id not in (proposal.get("finalVotes") or {}):
        proposal = client.vote(proposal["proposalId"], True)
    return {"proposalId": proposal["proposalId"], "proposalState": proposal["proposalState"]}


def _open_admission(party: Party, cert_pem: str) -> dict[str, Any] | None:
    client = party.client()
    for proposal in client.proposals():
        if proposal.get("proposalState") != "Open":
            continue
        if any(a.get("name") == "set_member" and (a.get("args") or {}).get("cert") == cert_pem
               for a in client.proposal_actions(proposal["proposalId"])):
            return client.proposal(proposal["proposalId"])
    return None


@router.post("/activate")
def activate(party: PartyDep) -> dict[str, Any]:
    """An admitted member (Accepted) becomes Active: it signs the state digest back, as any new member does."""
    status = next((m.get("status") for m in party.client().members()
                   if m.get("memberId") == party.identity.member_id), None)
    if status is None:
        raise FieldError.one(None, "this workspace's key is no member yet: the consortium has not admitted it",
                             http_status=409)
    if status != "Active":
        try:
            party.client().activate()
        except CgsRequestFailed as exc:
            raise FieldError.one(None, exc.message, http_status=409) from None
    return {"memberId": party.identity.member_id, "status": "Active"}
