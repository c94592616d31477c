"""CCF's governance API (2024-07-01) as the stand-in serves it: the consortium's members under
`/gov/service/members`, their state-digest acknowledgements, and the proposals members make, vote on and
withdraw under `/gov/members/proposals`.

Writes are COSE Sign1 messages signed by an active member (see `deps`); reads need no credentials, as on CCF.
A member joins by a `set_member` proposal (usually the operator's), then acknowledges a state digest
(`:update`, then `:ack`), which makes it Active: only then does it vote.

Ballots are CCF's JavaScript ballots; the stand-in runs no JavaScript and accepts exactly the two standard
ones (vote for, vote against).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ...common.ccfwire import GOV_API_VERSION
from ...common.deploymentspec import template_sha256
from ...common.errors import BadRequest, Forbidden, NotFound
from . import paging, schemas
from .deps import AckAuth, BallotAuth, Cgs, CgsState, ProposalAuth, StateDigestAuth, WithdrawalAuth

router = APIRouter()

BALLOTS = {"export function vote (proposal, proposerId) { return true }": True,
           "export function vote (proposal, proposerId) { return false }": False}


@router.get("/gov/service/members", response_model=None)
async def list_members(cgs: Cgs) -> dict[str, Any]:
    return {"value": cgs.store.members_view()}


@router.get("/gov/service/members/{member_id}", response_model=None)
async def get_member(member_id: str, cgs: Cgs) -> dict[str, Any]:
    cgs.store.require_member(member_id)
    return next(m for m in cgs.store.members_view() if m["memberId"] == member_id)


@router.post("/gov/members/state-digests/{member_id}:update", response_model=None)
async def update_state_digest(member_id: str, cgs: Cgs, caller: StateDigestAuth) -> dict[str, Any]:
    _only_self(caller.who, member_id)
    return cgs.store.state_digest(member_id)


@router.post("/gov/members/state-digests/{member_id}:ack", status_code=204, response_class=Response)
async def ack_state_digest(member_id: str, cgs: Cgs, caller: AckAuth) -> Response:
    _only_self(caller.who, member_id)
    cgs.store.ack(member_id, caller.json())
    return Response(status_code=204)


@router.post("/gov/members/proposals:create", response_model=None, openapi_extra=schemas.PROPOSAL)
async def create_proposal(cgs: Cgs, caller: ProposalAuth) -> dict[str, Any]:
    actions = _proposed_actions(caller.json())
    with cgs.change():
        proposal = cgs.store.create_proposal(caller.who, actions)
        _record(cgs, proposal, caller.who, "propose")
    return cgs.store.proposal_view(proposal)


@router.get("/gov/members/proposals", response_model=None)
async def list_proposals(cgs: Cgs, skiptoken: paging.SkipToken = None, maxpagesize: paging.MaxPageSize = None
                         ) -> dict[str, Any]:
    return paging.listing(cgs.store.db, "proposals", "/gov/members/proposals", skiptoken=skiptoken,
                          maxpagesize=maxpagesize, view=lambda _, proposal: cgs.store.proposal_view(proposal),
                          query={"api-version": GOV_API_VERSION})


@router.get("/gov/members/proposals/{proposal_id}", response_model=None)
async def get_proposal(proposal_id: str, cgs: Cgs) -> dict[str, Any]:
    return cgs.store.proposal_view(cgs.store.proposal(proposal_id))


@router.get("/gov/members/proposals/{proposal_id}/actions", response_model=None)
async def get_proposal_actions(proposal_id: str, cgs: Cgs) -> dict[str, Any]:
    return {"actions": cgs.store.proposal(proposal_id)["actions"]}


@router.get("/gov/members/proposals/{proposal_id}/ballots/{member_id}", response_model=None)
async def get_ballot(proposal_id: str, member_id: str, cgs: Cgs) -> dict[str, Any]:
    ballots = cgs.store.proposal(proposal_id)["ballots"]
    if member_id not in ballots:
        raise NotFound(f"no ballot from {member_id} on proposal {proposal_id}", code="VoteNotFound")
    return {"ballot": next(text for text, vote in BALLOTS.items() if vote == ballots[member_id])}


@router.post("/gov/members/proposals/{proposal_id}/ballots/{member_id}:submit", response_model=None,
             openapi_extra=schemas.BALLOT)
async def submit_ballot(proposal_id: str, member_id: str, cgs: Cgs, caller: BallotAuth) -> dict[str, Any]:
    _only_self(caller.who, member_id)
    if caller.proposal_id != proposal_id:
        raise BadRequest(f"the ballot was signed for proposal {caller.proposal_id}, not {proposal_id}",
                         code="InvalidInput")
    text = caller.json().get("ballot")
    if text not in BALLOTS:
        raise BadRequest("ballot: the stand-in runs no JavaScript and accepts only the two standard ballots, "
                         "'export function vote (proposal, proposerId) { return true }' or '{ return false }'",
                         code="InvalidInput")
    current = cgs.store.proposal(proposal_id)
    if current["state"] == "Open" and current["ballots"].get(caller.who) == BALLOTS[text]:
        return cgs.store.proposal_view(current)  # CCF: the same ballot again is answered as before, nothing written
    with cgs.change():
        proposal = cgs.store.vote(proposal_id, caller.who, BALLOTS[text])
        _record(cgs, proposal, caller.who, "vote", ballot="accept" if BALLOTS[text] else "reject")
    return cgs.store.proposal_view(proposal)


@router.post("/gov/members/proposals/{proposal_id}:withdraw", response_model=None)
async def withdraw_proposal(proposal_id: str, cgs: Cgs, caller: WithdrawalAuth) -> dict[str, Any]:
    if caller.proposal_id != proposal_id:
        raise BadRequest(f"the withdrawal was signed for proposal {caller.proposal_id}, not {proposal_id}",
                         code="InvalidInput")
    with cgs.change():
        proposal = cgs.store.withdraw(proposal_id, caller.who)
        _record(cgs, proposal, caller.who, "withdraw")
    return cgs.store.proposal_view(proposal)


def _only_self(who: str, member_id: str) -> None:
    if who != member_id:
        raise Forbidden(f"signed by {who[:12]}…, not by member {member_id[:12]}…: a member acts only for itself",
                        code="AuthorizationFailed")


def _record(cgs: CgsState, proposal: dict[str, Any], who: str, what: str, **details: Any) -> None:
    """The proposal's step on the audit log of each contract it is about, and what its acceptance did there."""
    for action in proposal["actions"]:
        contract_id = _contract_of(action)
        if not contract_id or contract_id not in cgs.store.state.contracts:
            continue
        cgs.record(contract_id, who, what, proposalId=proposal["proposalId"], proposal=action["name"],
                   state=proposal["state"], **details)
        if proposal["state"] == "Accepted" and action["name"] == "set_deployment_spec":
            cgs.record(contract_id, who, "deployment_spec_accepted", proposalId=proposal["proposalId"],
                       templateSha256=template_sha256(action["args"]["spec"]["data"]))


def _proposed_actions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The proposal's actions, shaped as the store expects them: a list of `{name, args}` whose ids are strings and
    whose policy claims each name at least one value (the store checks what they mean)."""
    actions = body.get("actions")
    if not isinstance(actions, list):
        raise BadRequest("actions: expected a list of {name, args}", code="ProposalFailedToValidate")
    for number, action in enumerate(actions):
        if not isinstance(action, dict) or not isinstance(action.get("name"), str) \
                or not isinstance(action.get("args"), dict):
            raise BadRequest(f"actions[{number}]: expected {{name: string, args: object}}",
                             code="ProposalFailedToValidate")
        claims = action["args"].get("claims")
        if isinstance(claims, dict) and any(values == [] for values in claims.values()):
            raise BadRequest(f"actions[{number}].args.claims: each claim needs at least one value",
                             code="ProposalFailedToValidate")
    return actions


def _contract_of(action: dict[str, Any]) -> str | None:
    """The contract an action is about: named, or that of the member document it carries."""
    args = action["args"]
    document = args.get("document")
    contract_id = args.get("contractId") or (document.get("contractId") if isinstance(document, dict) else None)
    return contract_id if isinstance(contract_id, str) else None
