"""The governance API under `/gov/members`: the consortium's members, whom the network operator registers,
and the proposals members make and vote on."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter

from ...common.deploymentspec import template_sha256
from ...common.errors import BadRequest, Forbidden, NotFound
from ...common.memberauth import member_id_of
from . import schemas
from .ca import ensure_ca
from .deps import OPERATOR, Cgs, CgsState, MemberAuth, MemberOrOperatorAuth

router = APIRouter()


@router.get("/gov/members", response_model=None)
async def list_members(cgs: Cgs, _: MemberOrOperatorAuth) -> dict[str, Any]:
    return {"value": [{"memberId": mid, "name": m["name"], "cert": m["cert"]}
                      for mid, m in cgs.store.state.members.items()]}


@router.post("/gov/members", response_model=None, openapi_extra=schemas.MEMBER)
async def add_member(cgs: Cgs, caller: MemberOrOperatorAuth) -> dict[str, Any]:
    if caller.who != OPERATOR:
        raise Forbidden("only the network operator registers members")
    data = caller.json()
    try:
        cert = x509.load_pem_x509_certificate(str(data.get("cert", "")).encode())
    except ValueError:
        raise BadRequest("cert: not a PEM certificate") from None
    name = str(data.get("name") or "")
    if not name:
        raise BadRequest("name: required")
    cgs.store.add_member(member_id_of(cert), name, cert.public_bytes(serialization.Encoding.PEM).decode())
    return {"memberId": member_id_of(cert), "name": name}


@router.post("/gov/members/proposals:create", response_model=None, openapi_extra=schemas.PROPOSAL)
async def create_proposal(cgs: Cgs, caller: MemberAuth) -> dict[str, Any]:
    actions = _proposed_actions(caller.json())
    with cgs.change():
        proposal = cgs.store.create_proposal(caller.who, actions)
        for action in proposal["actions"]:
            contract_id = _contract_of(cgs, action)
            if contract_id:
                cgs.record(contract_id, caller.who, "propose", proposalId=proposal["proposalId"],
                           proposal=action["name"])
    return _proposal_view(proposal)


@router.get("/gov/members/proposals/{proposal_id}", response_model=None)
async def get_proposal(proposal_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    proposal = cgs.store.state.proposals.get(proposal_id)
    if proposal is None:
        raise NotFound(f"proposal {proposal_id!r} does not exist", code="ProposalNotFound")
    return _proposal_view(proposal)


@router.post("/gov/members/proposals/{proposal_id}/ballots/{member_id}:submit", response_model=None,
             openapi_extra=schemas.BALLOT)
async def vote(proposal_id: str, member_id: str, cgs: Cgs, caller: MemberAuth) -> dict[str, Any]:
    if caller.who != member_id:
        raise Forbidden("a member votes only for itself")
    ballot = caller.json().get("ballot")
    if ballot not in ("accept", "reject"):
        raise BadRequest("ballot: must be 'accept' or 'reject'")
    with cgs.change():
        proposal = cgs.store.vote(proposal_id, caller.who, ballot == "accept")
        for action in proposal["actions"]:
            contract_id = _contract_of(cgs, action)
            if contract_id:
                cgs.record(contract_id, caller.who, "vote", proposalId=proposal_id, ballot=ballot,
                           state=proposal["state"])
                if proposal["state"] == "Accepted" and action["name"] == "enable_ca":
                    ensure_ca(cgs.store, contract_id)
                if proposal["state"] == "Accepted" and action["name"] == "set_deployment_spec":
                    cgs.record(contract_id, caller.who, "deployment_spec_accepted", proposalId=proposal_id,
                               templateSha256=template_sha256(action["args"]["spec"]["data"]))
    return _proposal_view(proposal)


def _proposed_actions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The proposal's actions, shaped as the store expects them: a list of `{name, args}` whose ids are strings and
    whose policy claims each name at least one value (the store checks what they mean)."""
    actions = body.get("actions") or []
    if not isinstance(actions, list):
        raise BadRequest("actions: expected a list of {name, args}")
    for number, action in enumerate(actions):
        if not isinstance(action, dict) or not isinstance(action.get("name"), str) \
                or not isinstance(action.get("args"), dict):
            raise BadRequest(f"actions[{number}]: expected {{name: string, args: object}}")
        for key in ("contractId", "documentId"):
            if key in action["args"] and not isinstance(action["args"][key], str):
                raise BadRequest(f"actions[{number}].args.{key}: expected a string")
        claims = action["args"].get("claims")
        if isinstance(claims, dict) and any(values == [] for values in claims.values()):
            raise BadRequest(f"actions[{number}].args.claims: each claim needs at least one value")
    return actions


def _contract_of(cgs: CgsState, action: dict[str, Any]) -> str | None:
    """The contract an action is about: named, or that of the member document it names."""
    return action["args"].get("contractId") or cgs.store.state.documents.get(
        action["args"].get("documentId"), {}).get("contractId")


def _proposal_view(proposal: dict[str, Any]) -> dict[str, Any]:
    return {"proposalId": proposal["proposalId"], "proposerId": proposal["proposerId"],
            "state": proposal["state"], "actions": proposal["actions"],
            "ballotCount": len(proposal["ballots"]),
            "votes": [{"memberId": m, "vote": v} for m, v in proposal["ballots"].items()]}
