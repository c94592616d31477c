"""CCF governance messages: COSE_Sign1 envelopes signed with a member's key (RFC 9052, as CCF reads them).

A governance write (a proposal, a ballot, a withdrawal, a state-digest update or ack) is the request body
itself, content type `application/cose`: the CBOR tag 18 around `[protected, unprotected, payload,
signature]`. The protected header carries

- `1` (alg): -35, ES384 (members hold EC P-384 keys),
- `4` (kid): the member id, i.e. the lowercase hex SHA-256 of the member certificate's DER, as *bytes*
  (the reference's `Cose.FingerprintCertificate` encodes the hex text as ASCII bytes),
- `ccf.gov.msg.type`: what the message is (`MessageType`),
- `ccf.gov.msg.created_at`: an integer, seconds since the epoch,
- `ccf.gov.msg.proposal_id`: for ballots and withdrawals, the proposal they are about,

and the signature is ECDSA over the Sig_structure `["Signature1", protected, b"", payload]` with SHA-384,
encoded as the raw `r || s` (48 bytes each), not DER.

Verification takes the envelope's bytes as sent: the protected header is checked as the signer encoded
it, so a header that is re-encoded, reordered or extended no longer verifies.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .errors import Unauthorized

CONTENT_TYPE = "application/cose"
COSE_SIGN1_TAG = 18
ALG, CRIT, KID = 1, 2, 4
ES384 = -35
MSG_TYPE = "ccf.gov.msg.type"
CREATED_AT = "ccf.gov.msg.created_at"
PROPOSAL_ID = "ccf.gov.msg.proposal_id"
#: CCF keeps created_at as ten decimal digits (enough until November 2286) and refuses anything larger.
MAX_CREATED_AT = 9_999_999_999

MessageType = Literal["proposal", "ballot", "withdrawal", "ack", "state_digest", "recovery_share"]
MESSAGE_TYPES: tuple[str, ...] = ("proposal", "ballot", "withdrawal", "ack", "state_digest", "recovery_share")

_P384_BYTES = 48
# The order of the P-384 group: (r, s) and (r, n - s) are both valid signatures of one message.
_P384_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
_MEMBER_ID = re.compile(rb"[0-9a-f]{64}")


class CoseRefused(Unauthorized):
    """A governance envelope that does not authenticate its sender (CCF answers these 401)."""

    code = "InvalidAuthenticationInfo"


@dataclass(frozen=True)
class GovMessage:
    """A governance message whose signature verified against the certificate of the member it names."""

    member_id: str
    msg_type: str
    created_at: int
    proposal_id: str | None
    payload: bytes
    #: The raw r || s signature (the reference keys proposal ids and replay records on it).
    signature: bytes


def member_id_of(cert: x509.Certificate) -> str:
    """CCF's member id: the lowercase hex SHA-256 of the certificate's DER."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def signature_digest(message: GovMessage) -> str:
    """The hex SHA-256 of the message's signature with `s` in its low form. CCF keys its replay records on the
    signature's digest; as ECDSA signatures are malleable (anyone may turn `s` into `n - s` and the signature
    still verifies), the digest of the raw bytes would let a captured proposal be replayed once more."""
    r = message.signature[:_P384_BYTES]
    s = int.from_bytes(message.signature[_P384_BYTES:], "big")
    low_s = min(s, _P384_ORDER - s)
    return hashlib.sha256(r + low_s.to_bytes(_P384_BYTES, "big")).hexdigest()


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign_gov_message(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, msg_type: str, payload: bytes, *,
                     proposal_id: str | None = None, created_at: int | None = None) -> bytes:
    """The COSE_Sign1 envelope of a governance message from the member holding `key` and `cert`."""
    if not isinstance(key.curve, ec.SECP384R1):
        raise ValueError("governance messages are signed with an EC P-384 key (ES384)")
    header: dict[Any, Any] = {ALG: ES384, KID: member_id_of(cert).encode("ascii"), MSG_TYPE: msg_type,
                              CREATED_AT: int(time.time()) if created_at is None else created_at}
    if proposal_id is not None:
        header[PROPOSAL_ID] = proposal_id
    protected = cbor2.dumps(header)
    der = key.sign(_sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(_P384_BYTES, "big") + s.to_bytes(_P384_BYTES, "big")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def _decode(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception:  # noqa: BLE001 — cbor2 raises many kinds on hostile input (decode, recursion, value)
        raise CoseRefused(f"{what} is not well-formed CBOR") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _header(protected: bytes) -> tuple[str, str, int, str | None]:
    header = _decode(protected, "the COSE protected header")
    if not isinstance(header, Mapping):
        raise CoseRefused("the COSE protected header is not a map")
    if CRIT in header:
        raise CoseRefused("the COSE protected header marks parameters critical; none is understood here")
    alg = header.get(ALG)
    if not _is_int(alg) or alg != ES384:
        raise CoseRefused(f"COSE alg must be ES384 ({ES384}), not {str(alg)[:20]}")
    kid = header.get(KID)
    if not isinstance(kid, bytes) or not _MEMBER_ID.fullmatch(kid):
        raise CoseRefused("COSE kid must be the member id: the hex SHA-256 of the member certificate, as bytes")
    msg_type = header.get(MSG_TYPE)
    if not isinstance(msg_type, str):
        raise CoseRefused(f"the COSE protected header has no {MSG_TYPE}")
    created_at = header.get(CREATED_AT)
    if not _is_int(created_at) or not 0 <= created_at <= MAX_CREATED_AT:
        raise CoseRefused(f"{CREATED_AT} must be an integer number of seconds since the epoch, at most ten digits")
    proposal_id = header.get(PROPOSAL_ID)
    if proposal_id is not None and not isinstance(proposal_id, str):
        raise CoseRefused(f"{PROPOSAL_ID} must be a string")
    return kid.decode("ascii"), msg_type, created_at, proposal_id


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1 message, its protected header still as the signer encoded it."""

    protected: bytes
    payload: bytes
    signature: bytes


def decode_sign1(envelope: bytes) -> Sign1:
    """The parts of a tagged COSE_Sign1 message with an attached payload and an ES384-sized signature."""
    message = _decode(envelope, "the request body (application/cose)")
    if not isinstance(message, cbor2.CBORTag) or message.tag != COSE_SIGN1_TAG:
        raise CoseRefused("the request body is not a tagged COSE_Sign1 message (CBOR tag 18)")
    parts = message.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise CoseRefused("a COSE_Sign1 message is [protected, unprotected, payload, signature]")
    protected, unprotected, payload, signature = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        raise CoseRefused("COSE_Sign1: the protected header must be a byte string, the unprotected one a map")
    if not isinstance(payload, bytes):
        raise CoseRefused("COSE_Sign1: the payload must be attached (a byte string)")
    if not isinstance(signature, bytes) or len(signature) != 2 * _P384_BYTES:
        raise CoseRefused("COSE_Sign1: an ES384 signature is 96 bytes (r || s)")
    return Sign1(protected, payload, signature)


def verify_es384(message: Sign1, public_key: ec.EllipticCurvePublicKey) -> None:
    """Check the message's raw r || s signature over its Sig_structure with a P-384 key."""
    if not isinstance(public_key.curve, ec.SECP384R1):
        raise CoseRefused("ES384 is verified with an EC P-384 key")
    r = int.from_bytes(message.signature[:_P384_BYTES], "big")
    s = int.from_bytes(message.signature[_P384_BYTES:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), _sig_structure(message.protected, message.payload),
                          ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise CoseRefused("the COSE signature does not verify") from None


def verify_gov_message(envelope: bytes,
                       cert_for_kid: Callable[[str], x509.Certificate | None]) -> GovMessage:
    """Check `envelope` is a COSE_Sign1 governance message signed by the member whose certificate
    `cert_for_kid(member_id)` gives (None: no such member), and return what it says."""
    message = decode_sign1(envelope)
    member_id, msg_type, created_at, proposal_id = _header(message.protected)
    cert = cert_for_kid(member_id)
    if cert is None:
        raise CoseRefused(f"COSE kid {member_id[:12]}… is not a member of this service")
    public_key = cert.public_key()
    if member_id_of(cert) != member_id or not isinstance(public_key, ec.EllipticCurvePublicKey) \
            or not isinstance(public_key.curve, ec.SECP384R1):
        raise CoseRefused(f"member {member_id[:12]}… has no EC P-384 certificate to verify ES384 with")
    try:
        verify_es384(message, public_key)
    except CoseRefused:
        raise CoseRefused(f"the COSE signature does not verify with member {member_id[:12]}…'s key") from None
    return GovMessage(member_id, msg_type, created_at, proposal_id, message.payload, message.signature)
