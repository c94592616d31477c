"""How the CGS stand-in verifies a room's request, as the real CGS does: the evidence (report, VCEK chain, UVM
endorsement) must verify, its claims must satisfy the contract's clean-room policy, and REPORT_DATA must bind
the envelope's `encrypt.publicKey`; a write's `sign.signature` must verify over the decoded `data` bytes
(RSA-PSS-SHA256, 32-byte salt) with that same key.

Replays. The reference signs `data` alone; its `timestamp` rides unsigned beside it, so a captured write
verifies again with any timestamp, and CGS itself refuses nothing it has seen (it relies on TLS to CCF and
on the room's key dying with the room). The stand-in refuses more: every accepted room signature is
recorded (its sha256, in the database, see `SignatureLedger`) and a signature seen before is refused, across
restarts. RSA-PSS signing is randomised, so a room that signs a write afresh never repeats a signature: only
a replay does. The timestamp must also lie within the replay window of now: being unsigned it proves
nothing about the write, but a request cannot put a far-off time on an audit record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...common.envelope import report_data_for, unb64, verify_signature, wrap
from ...common.errors import CcrError, Forbidden
from .db import Database
from .store import Store

AttestationVerifier = Callable[[dict[str, Any]], dict[str, Any]]


class RoomRefused(CcrError):
    """The reference answers room verification failures with 400 and a code naming the check."""

    http_status = 400


class ReplayGuard:
    """Remembers signatures until their timestamp leaves the window, so each is accepted once. Entries
    expire in arrival order, so pruning costs only what expired.

    The memory dies with the process; what a previous run accepted is not in it. So a request signed before
    this guard existed is refused too: a restarted stand-in cannot be fed a write it already applied, and a
    client signs every request afresh, so none of its own requests is lost to this."""

    def __init__(self, window_s: float):
        self.window_ms = int(window_s * 1000)
        self.started_ms = int(time.time() * 1000)
        self._seen: set[bytes] = set()
        self._arrivals: deque[tuple[int, bytes]] = deque()
        self._lock = threading.Lock()

    def check(self, timestamp_ms: int, signature: bytes, what: str) -> None:
        now = int(time.time() * 1000)
        if abs(now - timestamp_ms) > self.window_ms:
            raise RoomRefused(f"{what}: timestamp is {abs(now - timestamp_ms) / 1000:.0f} s away from now; "
                              f"the replay window is {self.window_ms / 1000:g} s", code="TimestampOutOfWindow")
        if timestamp_ms < self.started_ms:
            raise RoomRefused(f"{what}: signed before the service (re)started, so it may have been accepted "
                              "already (replay): sign it again", code="Replayed")
        digest = hashlib.sha256(signature).digest()
        with self._lock:
            # A signature is remembered for two windows after arrival: longer than its timestamp can pass.
            while self._arrivals and now - self._arrivals[0][0] > 2 * self.window_ms:
                self._seen.discard(self._arrivals.popleft()[1])
            if digest in self._seen:
                raise RoomRefused(f"{what}: this signed request was already used (replay)", code="Replayed")
            self._seen.add(digest)
            self._arrivals.append((now, digest))


class SignatureLedger:
    """Every room signature the stand-in accepted, by sha256, kept in its database: each is accepted once,
    however long ago and whatever restarts came between. Costs one 32-byte key per signed write, next to
    the event or certificate record the write makes anyway."""

    def __init__(self, database: Database):
        self.db = database

    def consume(self, signature: bytes, what: str) -> None:
        digest = hashlib.sha256(signature).digest()
        with self.db.transaction() as conn:
            inserted = conn.execute("INSERT OR IGNORE INTO room_signatures (digest, seqno) "
                                    "SELECT ?, value + 1 FROM counters WHERE name = 'seqno'", (digest,)).rowcount
        if not inserted:
            raise RoomRefused(f"{what}: this signed request was already used (replay)", code="Replayed")


def check_timestamp(timestamp: object, window_ms: int, what: str) -> int:
    """The envelope's `timestamp` (ms since the epoch, a string of at most 13 digits, as CGS takes it), which
    must lie within `window_ms` of now."""
    if not isinstance(timestamp, str) or not timestamp:
        raise RoomRefused("Timestamp must be supplied.", code="TimestampMissing")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise RoomRefused("Timestamp must be milliseconds since the epoch.", code="TimestampMissing")
    if len(timestamp) > 13:
        raise RoomRefused("Timestamp value is too large.", code="TimestampTooLarge")
    now = int(time.time() * 1000)
    if abs(now - int(timestamp)) > window_ms:
        raise RoomRefused(f"{what}: timestamp is {abs(now - int(timestamp)) / 1000:.0f} s away from now; "
                          f"the replay window is {window_ms / 1000:g} s", code="TimestampOutOfWindow")
    return int(timestamp)


@dataclass(frozen=True)
class Room:
    """A room request that verified: the key it attested (None when the request needed none) and, for a signed
    request, its data and timestamp."""

    public_pem: bytes | None
    data: Any = None
    timestamp_ms: int | None = None

    def wrapped(self, payload: bytes) -> dict[str, str]:
        """The answer to a release: `payload` wrapped to the attested key."""
        assert self.public_pem is not None, "releases are verified with needs_key, which binds the key"
        return {"value": base64.b64encode(wrap(self.public_pem, payload)).decode()}


def attestation_of(envelope: dict[str, Any]) -> dict[str, Any]:
    attestation = envelope.get("attestation")
    if not isinstance(attestation, dict):
        raise RoomRefused("Attestation payload must be supplied.", code="AttestationMissing")
    return attestation


class RoomVerifier:
    def __init__(self, store: Store, verify_attestation: AttestationVerifier, *, window_s: float):
        self.store = store
        self.verify_attestation = verify_attestation
        self.window_ms = int(window_s * 1000)
        self.signatures = SignatureLedger(store.db)
        self._claims_cache: dict[str, dict[str, Any]] = {}

    def verify(self, contract_id: str, envelope: dict[str, Any], *, signed: bool, needs_key: bool = True,
               needs_consent: bool = False) -> Room:
        attestation = attestation_of(envelope)
        # A room may audit as soon as the policy admits it (so a refused start is on record); everything
        # else needs the accepted contract.
        if needs_key and not self.store.is_accepted(contract_id):
            raise RoomRefused("Contract does not exist or has not been accepted.", code="ContractNotAccepted")
        claims = self._claims(attestation)
        violation = self.store.policy_violation(contract_id, claims)
        if violation:
            raise RoomRefused(violation, code="VerifySnpAttestationFailed")
        if signed:
            room = self._signed(envelope, self._attested_key(envelope, claims))
        else:
            room = Room(self._attested_key(envelope, claims) if needs_key else None)
        if needs_consent:
            status = self.store.execution_status(contract_id)
            if status["status"] != "enabled":
                raise Forbidden(status["reason"]["message"], code=status["reason"]["code"])
        return room

    def _claims(self, attestation: dict[str, Any]) -> dict[str, Any]:
        cache_key = hashlib.sha256(json.dumps(attestation, sort_keys=True).encode()).hexdigest()
        claims = self._claims_cache.get(cache_key)
        if claims is None:
            try:
                claims = self.verify_attestation(attestation)
            except CcrError as exc:
                raise RoomRefused(exc.message, code="VerifySnpAttestationFailed") from None
            if len(self._claims_cache) >= 1024:  # rooms re-present the same evidence: a small cache suffices
                self._claims_cache.clear()
            self._claims_cache[cache_key] = claims
        return claims

    def _attested_key(self, envelope: dict[str, Any], claims: dict[str, Any]) -> bytes:
        encrypt = envelope.get("encrypt")
        if not isinstance(encrypt, dict) or not isinstance(encrypt.get("publicKey"), str):
            raise RoomRefused("Encrypt payload must be supplied.", code="EncryptionMissing")
        public_pem = unb64(encrypt["publicKey"], "encrypt.publicKey")
        if str(claims.get("x-ms-sevsnpvm-reportdata", "")).lower() != report_data_for(public_pem).hex():
            raise RoomRefused("Attestation report_data value did not match calculated value.",
                              code="ReportDataMismatch")
        return public_pem

    def _signed(self, envelope: dict[str, Any], public_pem: bytes) -> Room:
        sign, data_b64 = envelope.get("sign"), envelope.get("data")
        if not isinstance(sign, dict):
            raise RoomRefused("Signature payload must be supplied.", code="SignatureMissing")
        timestamp_ms = check_timestamp(envelope.get("timestamp"), self.window_ms, "signed write")
        if not isinstance(data_b64, str):
            raise RoomRefused("data must be supplied.", code="DataMissing")
        if not isinstance(sign.get("publicKey"), str) or not isinstance(sign.get("signature"), str):
            raise RoomRefused("sign.publicKey and sign.signature must be supplied.", code="SignatureMissing")
        if unb64(sign["publicKey"], "sign.publicKey") != public_pem:
            raise RoomRefused("sign.publicKey is not the attested key", code="ReportDataMismatch")
        signature = unb64(sign["signature"], "sign.signature")
        data = unb64(data_b64, "data")
        if not verify_signature(public_pem, signature, data):
            raise RoomRefused("Signature verification was not successful.", code="SignatureMismatch")
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            raise RoomRefused("data is not base64 JSON", code="InvalidData") from None
        # Consumed last: a request refused for anything else does not use up its signature.
        self.signatures.consume(signature, "signed write")
        return Room(public_pem, value, timestamp_ms)
