"""Interim stand-ins for the COSE member dependencies that h2-memberwire adds to `deps` (`ProposalAuth`,
`BallotAuth`, `WithdrawalAuth`, `AckAuth`, `StateDigestAuth`), so the governance routes can be written against
their names before that branch lands: here a member signs with the legacy `CCR-Member` header, and the
proposal a ballot or withdrawal is for is the path's. Deleted when h2-memberwire is merged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from ...common.errors import Unauthorized
from .deps import Cgs, authenticate_member, json_body


@dataclass(frozen=True)
class CoseMember:
    who: str
    payload: bytes
    proposal_id: str | None
    created_at: int

    def json(self) -> dict[str, Any]:
        return json_body(self.payload)


def _auth(*, allow_accepted: bool = False):
    async def dependency(request: Request, cgs: Cgs) -> CoseMember:
        member = await authenticate_member(request, cgs)
        status = cgs.store.state.members[member.who].get("status", "Active")
        if status != "Active" and not (allow_accepted and status == "Accepted"):
            raise Unauthorized(f"member {member.who[:12]}… is {status}, not Active")
        return CoseMember(member.who, member.body, request.path_params.get("proposal_id"), 0)
    return dependency


ProposalAuth = Annotated[CoseMember, Depends(_auth())]
BallotAuth = Annotated[CoseMember, Depends(_auth())]
WithdrawalAuth = Annotated[CoseMember, Depends(_auth())]
AckAuth = Annotated[CoseMember, Depends(_auth(allow_accepted=True))]
StateDigestAuth = Annotated[CoseMember, Depends(_auth(allow_accepted=True))]
