"""Who is calling the run API: a contract member, by its signed request.

Every request carries `Authorization: CCR-Member id=…, ts=…, sig=…` (`sidecars.common.memberauth`): ECDSA
over METHOD, path?query, ts and sha256(body). The app checks it against the member's certificate as the
governance sidecar lists it (`GET {governance}/members`, from CGS), in this order, each step before the
next costs anything:

1. the header's syntax (401), the timestamp within ±window of now (401);
2. the member: known and Active (a list at most 30 s old, refreshed too when an unknown id arrives but at
   most every few seconds, so unknown ids cannot turn every request into a CGS round trip) — else 403, not a
   member of the contract;
3. the body, read only now (bounded by the app's body limit), and the signature over it (401);
4. replay: each signed request is accepted once. The memory is keyed by the *signed content* (member,
   method, target, ts, body hash), not the signature bytes: an ECDSA signature (r, s) has a twin
   (r, n - s) that verifies too, so a guard on the bytes would let a malleated copy through.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ..common.errors import Forbidden, Unauthorized
from ..common.memberauth import canonical_request, member_id_of, parse_authorization, verify_member_signature

#: CGS's name for a member that may act (an accepted one has not activated yet).
ACTIVE = "Active"
DEFAULT_WINDOW_S = 60.0
#: The least time between two member-list refreshes caused by unknown ids.
REFRESH_INTERVAL_S = 5.0
#: How long a fetched member list is trusted at all: a removed member's requests stop within this time.
MAX_AGE_S = 30.0


class NotAMember(Forbidden):
    code = "NotAMember"


@dataclass(frozen=True)
class Member:
    member_id: str
    #: the member's name in documents (`memberData.identifier`): what dataset owners and ballots name
    name: str
    cert: x509.Certificate


def parse_members(body: Any) -> dict[str, Member]:
    """The Active members of a `GET /members` answer, by id. A malformed entry is skipped, not trusted: a
    member whose certificate does not hash to its id is not that member."""
    members: dict[str, Member] = {}
    values = body.get("value") if isinstance(body, Mapping) else None
    for entry in values if isinstance(values, list) else ():
        if not isinstance(entry, Mapping) or entry.get("status") != ACTIVE:
            continue
        member_data = entry.get("memberData")
        name = member_data.get("identifier") if isinstance(member_data, Mapping) else None
        pem = entry.get("certificate")
        if not isinstance(name, str) or not name or not isinstance(pem, str):
            continue
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            continue
        member_id = member_id_of(cert)
        if entry.get("memberId") not in (None, member_id):
            continue
        members[member_id] = Member(member_id, name, cert)
    return members


class MemberDirectory:
    """The contract's Active members, fetched with `fetch` (→ the `/members` JSON) and cached."""

    def __init__(self, fetch: Callable[[], Any], *, refresh_interval_s: float = REFRESH_INTERVAL_S,
                 max_age_s: float = MAX_AGE_S, clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._refresh_interval_s = refresh_interval_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._members: dict[str, Member] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def refresh(self) -> dict[str, Member]:
        with self._lock:
            self._members = parse_members(self._fetch())
            self._fetched_at = self._clock()
            return self._members

    def member(self, member_id: str) -> Member | None:
        """The member with this id. The list is fetched again when it is older than `max_age_s` (a member
        removed from the contract, or suspended, loses access within that time), and when an unknown id
        arrives and the list is older than the refresh interval."""
        age = None if self._fetched_at is None else self._clock() - self._fetched_at
        if age is None or age >= self._max_age_s:
            return self.refresh().get(member_id)
        known = self._members.get(member_id)
        if known is not None:
            return known
        return self.refresh().get(member_id) if age >= self._refresh_interval_s else None

    def by_id(self) -> dict[str, Member]:
        if self._fetched_at is None:
            self.refresh()
        return dict(self._members)


class ReplayGuard:
    """Accepts each signed request once within the window; forgets it two windows after it arrived."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, clock: Callable[[], float] = time.time):
        self.window_ms = int(window_s * 1000)
        self._clock = clock
        # Requests signed before this process started may have been accepted by the previous one.
        self.started_ms = int(clock() * 1000)
        self._seen: set[bytes] = set()
        self._arrivals: deque[tuple[int, bytes]] = deque()
        self._lock = threading.Lock()

    def check_time(self, timestamp_ms: int) -> None:
        now = int(self._clock() * 1000)
        if abs(now - timestamp_ms) > self.window_ms:
            raise Unauthorized(f"signed request: timestamp is {abs(now - timestamp_ms) / 1000:.0f} s away from "
                               f"now; the window is {self.window_ms / 1000:g} s", code="TimestampOutOfWindow")
        if timestamp_ms < self.started_ms:
            raise Unauthorized("signed request: signed before the app (re)started, so it may have been accepted "
                               "already: sign it again", code="Replayed")

    def remember(self, signed_content: bytes) -> None:
        now = int(self._clock() * 1000)
        digest = hashlib.sha256(signed_content).digest()
        with self._lock:
            while self._arrivals and now - self._arrivals[0][0] > 2 * self.window_ms:
                self._seen.discard(self._arrivals.popleft()[1])
            if digest in self._seen:
                raise Unauthorized("signed request: already used (replay); sign each request afresh",
                                   code="Replayed")
            self._seen.add(digest)
            self._arrivals.append((now, digest))


class RequestAuthenticator:
    def __init__(self, directory: MemberDirectory, replay: ReplayGuard):
        self.directory = directory
        self.replay = replay

    def caller(self, authorization: str | None) -> tuple[Member, Any]:
        """Steps 1 and 2: the signing member (the signature is not checked yet) and the parsed header."""
        signed = parse_authorization(authorization)
        self.replay.check_time(signed.timestamp_ms)
        member = self.directory.member(signed.member_id)  # governance unreachable: its RemoteServiceError (502)
        if member is None:
            raise NotAMember(f"{signed.member_id[:12]}… is not an active member of the contract")
        return member, signed

    def verify(self, member: Member, signed: Any, method: str, target: str, body: bytes) -> Member:
        """Steps 3 and 4, once the body is read."""
        verify_member_signature(member.cert, signed, method, target, body)
        self.replay.remember(member.member_id.encode() + b"\n"
                             + canonical_request(method, target, str(signed.timestamp_ms), body))
        return member
