"""What the CGS stand-in's routers share: the stand-in's state and the FastAPI dependencies that say who is
calling. A member (or the network operator) signs its request with the `CCR-Member` scheme (see
`sidecars.common.memberauth`); a room presents the Azure clean room's attested envelope (see `room`).

Callers are authenticated before their body is parsed, and a room that fails attestation is refused before
anything else it sent is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from cryptography import x509
from fastapi import Depends, Request

from ...common.bodies import json_value
from ...common.errors import BadRequest, Unauthorized
from ...common.memberauth import member_id_of, parse_authorization, verify_member_signature
from .audit import AuditLog
from .issuer import OidcIssuer
from .room import ReplayGuard, Room, RoomRefused, RoomVerifier, attestation_of
from .store import Store

OPERATOR = "operator"


@dataclass
class CgsConfig:
    replay_window_s: float = 60.0
    token_lifetime_s: int = 3600


@dataclass(frozen=True)
class CgsState:
    """Everything the routes share, kept on `app.state.cgs`."""

    store: Store
    audit: AuditLog
    issuer: OidcIssuer
    operator_cert: x509.Certificate
    config: CgsConfig
    member_replay: ReplayGuard
    rooms: RoomVerifier

    @contextmanager
    def change(self) -> Iterator[None]:
        """A member's change and its audit record, committed together or not at all (when the store and the
        log share a database, as the stand-in's do)."""
        with self.store.db.transaction(), self.audit.db.transaction():
            yield

    def record(self, contract_id: str, who: str, action: str, **details: Any) -> None:
        """A member's governance action, on the contract's audit log."""
        member = self.store.member_name(who) if who != OPERATOR else OPERATOR
        self.audit.append(contract_id, "cgs", "governance", {"action": action, "member": member, **details})


async def cgs_state(request: Request) -> CgsState:
    return request.app.state.cgs


Cgs = Annotated[CgsState, Depends(cgs_state)]


def json_body(body: bytes) -> dict[str, Any]:
    value = json_value(body or b"{}")
    if not isinstance(value, dict):
        raise BadRequest("body: expected a JSON object")
    return value


# -- members ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """A member request whose signature verified: who signed it (a member id, or OPERATOR) and the body."""

    who: str
    body: bytes

    def json(self) -> dict[str, Any]:
        return json_body(self.body)


async def authenticate_member(request: Request, cgs: CgsState, *, allow_operator: bool = False) -> Member:
    # The header's syntax and the signer's membership are checked before a byte of the body is read; the body
    # is then read (bounded by the app's body limit) only because the signature covers its hash.
    signed = parse_authorization(request.headers.get("authorization"))
    if signed.member_id in cgs.store.state.members:
        cert = x509.load_pem_x509_certificate(cgs.store.state.members[signed.member_id]["cert"].encode())
        who = signed.member_id
    elif allow_operator and signed.member_id == member_id_of(cgs.operator_cert):
        cert, who = cgs.operator_cert, OPERATOR
    else:
        raise Unauthorized(f"{signed.member_id[:12]}… is not a member of this consortium")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    body = await request.body()
    verify_member_signature(cert, signed, request.method, target, body)
    try:
        cgs.member_replay.check(signed.timestamp_ms, signed.signature, "member request")
    except RoomRefused as exc:
        raise Unauthorized(exc.message) from None
    return Member(who, body)


async def member_auth(request: Request, cgs: Cgs) -> Member:
    return await authenticate_member(request, cgs)


async def member_or_operator_auth(request: Request, cgs: Cgs) -> Member:
    return await authenticate_member(request, cgs, allow_operator=True)


MemberAuth = Annotated[Member, Depends(member_auth)]
MemberOrOperatorAuth = Annotated[Member, Depends(member_or_operator_auth)]


# -- rooms --------------------------------------------------------------------------------------------------
def room_auth(*, signed: bool) -> Callable[[str, Request, CgsState], Awaitable[Room]]:
    """The dependency of a release to a room: the envelope must verify against the accepted contract and bind
    the key the answer is wrapped to, and execution consent must stand. A `signed` request signs its data."""

    async def releasing_room(contract_id: str, request: Request, cgs: Cgs) -> Room:
        return cgs.rooms.verify(contract_id, json_body(await request.body()), signed=signed, needs_consent=True)

    return releasing_room


ReleaseRoomAuth = Annotated[Room, Depends(room_auth(signed=False))]
SignedReleaseRoomAuth = Annotated[Room, Depends(room_auth(signed=True))]


async def auditing_room_auth(contract_id: str, request: Request, cgs: Cgs) -> Room:
    """A room writing to the audit log of an existing contract: it signs what it writes, and may write as soon
    as the policy admits it, before the contract is accepted."""
    envelope = json_body(await request.body())
    cgs.store.contract(contract_id)
    return cgs.rooms.verify(contract_id, envelope, signed=True, needs_key=False)


async def consent_checking_room_auth(contract_id: str, request: Request, cgs: Cgs) -> None:
    """A room asking for consent must attest, but its evidence is checked against the policy only once the
    contract is accepted: before that the answer is 'disabled' whoever asks."""
    envelope = json_body(await request.body())
    attestation_of(envelope)
    if cgs.store.is_accepted(contract_id):
        cgs.rooms.verify(contract_id, envelope, signed=False, needs_key=False)
