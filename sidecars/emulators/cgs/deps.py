"""What the CGS stand-in's routers share: the stand-in's state and the FastAPI dependencies that say who is
calling.

Members authenticate as they do against CCF:
- a governance write (`/gov/members/proposals:create`, a ballot, a withdrawal, a state-digest update or ack)
  is a COSE_Sign1 message signed by an active member (`cose_member_auth`, see `sidecars.common.cose`), with
  CCF's checks: the message type the endpoint expects, the proposal and member ids of the URL equal to the
  signed ones, and no proposal accepted twice;
- an application request (`/app/...`, CGS's `member_cert` policy) presents the member's certificate in
  mutual TLS (`MemberAuth`): the listener asks every client for a certificate and the request is the member's
  whose registered certificate it presented.
The legacy `CCR-Member` signed header is accepted only when the stand-in runs with `--allow-signed-header`.
A room presents the Azure clean room's attested envelope (see `room`).

Callers are authenticated before their body is parsed, and a room that fails attestation is refused before
anything else it sent is read.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from cryptography import x509
from fastapi import Depends, Request

from ...common.bodies import json_value
from ...common.cose import CONTENT_TYPE as COSE_CONTENT_TYPE
from ...common.cose import CoseRefused, GovMessage, signature_digest, verify_gov_message
from ...common.errors import BadRequest, Unauthorized
from ...common.http import client_certificate
from ...common.memberauth import SCHEME, member_id_of, parse_authorization, verify_member_signature
from . import db
from .audit import AuditLog
from .issuer import OidcIssuer
from .room import ReplayGuard, Room, RoomRefused, RoomVerifier, attestation_of
from .store import Store

ACTIVE, ACCEPTED = "Active", "Accepted"


class MemberNotAuthenticated(Unauthorized):
    """CCF's answer to a caller no authentication policy admits."""

    code = "InvalidAuthenticationInfo"


@dataclass
class CgsConfig:
    #: How far a signed message's time (COSE created_at, the legacy header's ts) may be from the stand-in's.
    replay_window_s: float = 60.0
    token_lifetime_s: int = 3600
    #: Accept the legacy `CCR-Member` header besides COSE and mutual TLS (`--allow-signed-header`).
    allow_signed_header: bool = False
    #: the CA bundle that verifies OIDC issuers an invitation names (`--ca-bundle`; None: the system's)
    ca_bundle: str | None = None


class RecentProposals:
    """CCF's replay protection of proposals, kept in the stand-in's database so that it survives a restart.

    CCF remembers the last `WINDOW` proposals as `created_at:digest` and refuses a proposal whose key it holds
    (`ProposalReplay`) or whose created_at is older than the median one it holds (`ProposalCreatedTooLongAgo`).
    CCF's digest is that of the signature bytes; ours is that of the signature with `s` made low (see
    `cose.signature_digest`), so flipping `s` does not make a captured proposal new."""

    WINDOW = 100
    _TABLE = "cose_recent_proposals"

    def __init__(self, database: db.Database):
        self.db = database
        with self.db.transaction() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._TABLE} (key TEXT PRIMARY KEY) WITHOUT ROWID")

    def admit(self, message: GovMessage) -> None:
        key = f"{message.created_at:010d}:{signature_digest(message)}"
        with self.db.transaction() as conn:
            if conn.execute(f"SELECT 1 FROM {self._TABLE} WHERE key = ?", (key,)).fetchone():
                raise BadRequest("Proposal submission replay: this signed proposal was already submitted",
                                 code="ProposalReplay")
            kept = [row[0] for row in conn.execute(f"SELECT key FROM {self._TABLE} ORDER BY key")]
            if kept:
                median = kept[len(kept) // 2].split(":", 1)[0]
                if key.split(":", 1)[0] < median:
                    raise BadRequest(f"Proposal created too long ago, created_at must be greater than {median}",
                                     code="ProposalCreatedTooLongAgo")
            conn.execute(f"INSERT INTO {self._TABLE} (key) VALUES (?)", (key,))
            for old in kept[:max(0, len(kept) + 1 - self.WINDOW)]:
                conn.execute(f"DELETE FROM {self._TABLE} WHERE key = ?", (old,))


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
        member = self.store.member_name(who)
        self.audit.append(contract_id, "cgs", "governance", {"action": action, "member": member, **details})

    @functools.cached_property
    def recent_proposals(self) -> RecentProposals:
        return RecentProposals(self.store.db)

    def member_cert(self, member_id: str, statuses: tuple[str, ...] = (ACTIVE,)) -> x509.Certificate | None:
        """The registered certificate of the member, when its status is one of `statuses`."""
        member = self.store.state.members.get(member_id)
        if member is None or member.get("status", ACTIVE) not in statuses:
            return None
        return _certificate(member["cert"])

    def client_certificates(self) -> list[str]:
        """The certificates the TLS listener lets clients present: every registered member's, the operator (the
        genesis member) among them. Whether one still stands for a caller is decided per request."""
        with self.store.lock:
            return [member["cert"] for member in self.store.state.members.values()]


@functools.lru_cache(maxsize=1024)
def _certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


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
    """An authenticated member request: who made it (a member id) and its body."""

    who: str
    body: bytes

    def json(self) -> dict[str, Any]:
        return json_body(self.body)


def _signed_header(request: Request, cgs: CgsState) -> bool:
    return cgs.config.allow_signed_header and request.headers.get("authorization", "").startswith(SCHEME + " ")


async def authenticate_member(request: Request, cgs: CgsState) -> Member:
    """A member request authenticated by the certificate the TLS client presented (or, with
    `--allow-signed-header`, by the legacy signed header). Its body is read only once the caller is known."""
    cert = client_certificate(request.scope)
    if cert is not None:
        member_id = member_id_of(cert)
        if cgs.member_cert(member_id, (ACTIVE, ACCEPTED)) is None:
            raise MemberNotAuthenticated(f"{member_id[:12]}… (the TLS client certificate) is not a member of "
                                         "this service")
        return Member(member_id, await request.body())
    if _signed_header(request, cgs):
        return await _authenticate_signed_header(request, cgs)
    raise MemberNotAuthenticated("a member request must present the member's certificate in TLS (mutual TLS, "
                                 "CCF's member_cert)")


async def _authenticate_signed_header(request: Request, cgs: CgsState,
                                      statuses: tuple[str, ...] = (ACTIVE, ACCEPTED)) -> Member:
    # The header's syntax and the signer's membership are checked before a byte of the body is read; the body
    # is then read (bounded by the app's body limit) only because the signature covers its hash.
    signed = parse_authorization(request.headers.get("authorization"))
    cert = cgs.member_cert(signed.member_id, statuses)
    if cert is None:
        raise MemberNotAuthenticated(f"{signed.member_id[:12]}… is not a member of this consortium")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    body = await request.body()
    verify_member_signature(cert, signed, request.method, target, body)
    try:
        cgs.member_replay.check(signed.timestamp_ms, signed.signature, "member request")
    except RoomRefused as exc:
        raise Unauthorized(exc.message) from None
    return Member(signed.member_id, body)


async def member_auth(request: Request, cgs: Cgs) -> Member:
    return await authenticate_member(request, cgs)


MemberAuth = Annotated[Member, Depends(member_auth)]


# -- governance writes (COSE Sign1) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CoseMember:
    """A governance message that authenticated: its signer (a member id), payload and signed header values."""

    who: str
    payload: bytes
    proposal_id: str | None
    created_at: int

    def json(self) -> dict[str, Any]:
        return json_body(self.payload)


def cose_member_auth(msg_type: str, *, allow_accepted: bool = False
                     ) -> Callable[[Request, CgsState], Awaitable[CoseMember]]:
    """The dependency of a governance write: a COSE_Sign1 body of type `msg_type` from an active member (an
    accepted one too with `allow_accepted`, as CCF lets a new member ack its state digest), signed within the
    replay window. A route's `proposal_id` and `member_id` path parameters must equal the signed proposal id
    and the signer."""
    statuses = (ACTIVE, ACCEPTED) if allow_accepted else (ACTIVE,)

    async def governance_message(request: Request, cgs: Cgs) -> CoseMember:
        if _signed_header(request, cgs):
            member = await _authenticate_signed_header(request, cgs, statuses)
            # The header signs the method and path, so the path's ids are the signer's.
            _check_path_member(request, member.who, msg_type)
            return CoseMember(member.who, member.body, request.path_params.get("proposal_id"), int(time.time()))
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != COSE_CONTENT_TYPE:
            raise MemberNotAuthenticated(f"a governance write is a COSE Sign1 message (content type "
                                         f"{COSE_CONTENT_TYPE}), not {content_type[:40] or 'an untyped body'}")
        message = verify_gov_message(await request.body(), lambda kid: cgs.member_cert(kid, statuses))
        if message.msg_type != msg_type:
            raise CoseRefused(f"this endpoint takes ccf.gov.msg.type {msg_type!r}, the message is "
                              f"{message.msg_type[:40]!r}")
        skew = abs(time.time() - message.created_at)
        if skew > cgs.config.replay_window_s:
            raise CoseRefused(f"ccf.gov.msg.created_at is {skew:.0f} s from the service's time; messages are "
                              f"accepted within {cgs.config.replay_window_s:g} s")
        path_proposal = request.path_params.get("proposal_id")
        if path_proposal is not None and message.proposal_id != path_proposal:
            raise BadRequest("Authenticated proposal id does not match URL", code="InvalidResourceName")
        _check_path_member(request, message.member_id, msg_type)
        if msg_type == "proposal":
            cgs.recent_proposals.admit(message)
        return CoseMember(message.member_id, message.payload, message.proposal_id, message.created_at)

    return governance_message


def _check_path_member(request: Request, who: str, msg_type: str | None = None) -> None:
    """CCF's check that the path's member is the signer, with its answers: the ack handlers word it their own
    way (and name it an authentication failure), the ballot handler as the other resource checks."""
    path_member = request.path_params.get("member_id")
    if path_member is None or path_member == who:
        return
    if msg_type in ("state_digest", "ack"):
        raise BadRequest(f"Member ID from path parameter ({path_member[:64]}) does not match member ID from body "
                         f"signature ({who}).", code="InvalidAuthenticationInfo")
    raise BadRequest("Authenticated member id does not match URL", code="InvalidResourceName")


ProposalAuth = Annotated[CoseMember, Depends(cose_member_auth("proposal"))]
BallotAuth = Annotated[CoseMember, Depends(cose_member_auth("ballot"))]
WithdrawalAuth = Annotated[CoseMember, Depends(cose_member_auth("withdrawal"))]
StateDigestAuth = Annotated[CoseMember, Depends(cose_member_auth("state_digest", allow_accepted=True))]
AckAuth = Annotated[CoseMember, Depends(cose_member_auth("ack", allow_accepted=True))]


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
