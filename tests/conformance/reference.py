"""Facts about the Azure clean room's governance wire, taken from its sources, and builders that make requests
the way its clients make them (written from the facts; none of their code is copied).

Sources (the mirror at /work/.mirror/Azure+azure-cleanroom/repo, `git show HEAD:PATH`; HEAD a2d263e):
- `src/internal/Cose/Cose.cs` (`CreateGovCoseSign1Message`, `Sign`, `FingerprintCertificate`): the COSE_Sign1
  governance envelope. Protected header: the string labels `ccf.gov.msg.type`, `ccf.gov.msg.created_at` and, for
  ballots and withdrawals, `ccf.gov.msg.proposal_id`, then alg (1) = ES384 (-35) and kid (4). A value that parses
  as an integer is encoded as one (`AddHeaders`: `int.TryParse`), so `created_at` (Unix seconds) is a CBOR int.
  kid is a byte string: the ASCII of the lowercase hex SHA-256 of the certificate's DER. The payload is the
  ASCII bytes of the JSON text, or empty when there is none (withdrawal, state_digest update). .NET signs with
  `CoseSign1Message.SignEmbedded`: signature r‖s over `["Signature1", protected, b"", payload]`, SHA-384.
- `src/internal/Cose/GovMessageType.cs`: the message types `proposal`, `ballot`, `withdrawal`, `ack`,
  `state_digest` (and `recovery_share`, which a clean room never sends).
- `src/governance/client/CcfClientManager.cs`: `Version = "2024-07-01"`, appended as `?api-version=` to every
  `/gov/...` request cgs-client makes; `/app/...` requests carry no api-version. The member id is the lowercase
  SHA-256 of the certificate (`GetCertHashString(SHA256).ToLower()`). `/app` calls authenticate with the member's
  certificate as the TLS client certificate (`SetAppAuthDefaults(X509Certificate2)`).
- `src/governance/client/HttpResponseMessageExtensions.cs` and the sidecar's twin: after a write that answers
  `x-ms-ccf-transaction-id`, poll `GET {app|gov}/tx?transaction_id=ID` every 500 ms for up to 5 s while the
  status is `Unknown` or `Pending`; anything but `Committed` fails.
- `src/governance/client/Controllers/*.cs`: the paths, methods and bodies (see `vectors`).
- `src/internal/Attestation/Attestation.cs` (`PrepareRequestContent`, `PrepareSignedDataRequestContent`) and
  `src/governance/sidecar/Controllers/*.cs`: the room's envelope. Signed writes carry `data` (base64 of the
  bytes signed), `timestamp` (Unix milliseconds as a string, not signed), `sign: {signature, publicKey}`,
  `encrypt: {publicKey}` (both base64 of the PEM), `platform` and `attestation`. The signature is RSA-PSS
  SHA-256 over the data bytes (salt = digest length, .NET's `RSASignaturePadding.Pss`).
- `src/governance/test/tests/CoseTests.cs` (`SignAndVerify`): a member certificate and key (P-384, CN member0)
  the reference's own tests sign with; used here as one consortium member.
- CCF (microsoft/CCF `src/node/gov/handlers/{proposals,acks}.h`, `src/node/gov/api_version.h`): the answers —
  proposals `{proposalId, proposerId, proposalState, ballotCount, finalVotes?, voteFailures?}`, `{value: [...]}`
  lists, `/actions` returns the proposal as submitted, state digest `{memberId, stateDigest}`, ack 204, error
  codes `MissingApiVersionParameter`, `UnsupportedApiVersionValue`, `ProposalReplay`, `InvalidResourceName`,
  `StateDigestMismatch`, `ProposalNotFound`, `ProposalNotOpen`, `VoteAlreadyExists`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

MIRROR_COMMIT = "a2d263e"
GOV_API_VERSION = "2024-07-01"
BALLOT_ACCEPT = "export function vote (proposal, proposerId) { return true }"
BALLOT_REJECT = "export function vote (proposal, proposerId) { return false }"
MESSAGE_TYPES = ("proposal", "ballot", "withdrawal", "ack", "state_digest")
TRANSACTION_ID_HEADER = "x-ms-ccf-transaction-id"
COSE_SIGN1_TAG = 18
ES384 = -35
ALG, KID = 1, 4
MSG_TYPE, CREATED_AT, PROPOSAL_ID = "ccf.gov.msg.type", "ccf.gov.msg.created_at", "ccf.gov.msg.proposal_id"

# src/governance/test/tests/CoseTests.cs, SignAndVerify: the reference's test member (valid until 2025-01-28;
# CCF does not check a member certificate's validity period when it verifies a COSE signature).
REFERENCE_MEMBER0_CERT = (
    "-----BEGIN CERTIFICATE-----\r\nMIIBtTCCATygAwIBAgIUY9SYtDL/Y4p/a4UNYmZ7knaJz9cwCgYIKoZIzj0EAwMw\r\n"
    "EjEQMA4GA1UEAwwHbWVtYmVyMDAeFw0yNDAxMjkxMzAyMzlaFw0yNTAxMjgxMzAy\r\n"
    "MzlaMBIxEDAOBgNVBAMMB21lbWJlcjAwdjAQBgcqhkjOPQIBBgUrgQQAIgNiAAQk\r\n"
    "iEE7/6+NF7C4kRmzeMZz5lbDB+LQlhE/gaipklIZtbkqztDZDTSm2rgKwxNy0XE3\r\n"
    "zj1IuZz/RLJAZvHlZRAm96Gq05IXZFamkV7yZlyg9Pi2Hr2jaAsK30UXWOhCvZWj\r\n"
    "UzBRMB0GA1UdDgQWBBTJjVBo2fhr0Ie40JMqw9x9KoB35jAfBgNVHSMEGDAWgBTJ\r\n"
    "jVBo2fhr0Ie40JMqw9x9KoB35jAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMD\r\n"
    "A2cAMGQCMHOW9fMpRal+3pUU8vwI9y/X91lbIp/3m9Vx24NssbwH94j+k5tyV3aG\r\n"
    "z7cDBnG38gIwOGlb7Efd1DjkyjS5pDZNhizEW2CSLBVO+1ZvR1YfRPqLNRMky3G/\r\n"
    "jt8Wz5K3zJOd\r\n-----END CERTIFICATE-----\r\n")
REFERENCE_MEMBER0_KEY = (
    "-----BEGIN EC PARAMETERS-----\r\nBgUrgQQAIg==\r\n-----END EC PARAMETERS-----\r\n"
    "-----BEGIN EC PRIVATE KEY-----\r\nMIGkAgEBBDA6njOb0k7XmIUtjx3OfSIdW1uHqVFQkEjMhgI+Hi9h+PGTkP9hIugj\r\n"
    "MxuIg+TV5fagBwYFK4EEACKhZANiAAQkiEE7/6+NF7C4kRmzeMZz5lbDB+LQlhE/\r\n"
    "gaipklIZtbkqztDZDTSm2rgKwxNy0XE3zj1IuZz/RLJAZvHlZRAm96Gq05IXZFam\r\n"
    "kV7yZlyg9Pi2Hr2jaAsK30UXWOhCvZU=\r\n-----END EC PRIVATE KEY-----\r\n")
# Its member id, computed once by hand from the certificate's DER (`openssl x509 -outform der | sha256sum`).
REFERENCE_MEMBER0_ID = "373d3aecb922fc7938c73b8cbef9989bf91c282e621cb8b9598b8ba7f7292820"


@dataclass(frozen=True)
class Signer:
    """A member's key and certificate, as cgs-client holds them (`CoseSignKey`)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def from_pem(cls, cert_pem: str | bytes, key_pem: str | bytes) -> Signer:
        cert_bytes = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        key_bytes = key_pem.encode() if isinstance(key_pem, str) else key_pem
        key = serialization.load_pem_private_key(key_bytes, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key, x509.load_pem_x509_certificate(cert_bytes))

    @property
    def member_id(self) -> str:
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def kid(self) -> bytes:
        return self.member_id.encode("ascii")

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def reference_member0() -> Signer:
    return Signer.from_pem(REFERENCE_MEMBER0_CERT, REFERENCE_MEMBER0_KEY)


def gov_envelope(signer: Signer, msg_type: str, payload: str | None, *, proposal_id: str | None = None,
                 created_at: int | None = None, alg: int = ES384, kid: bytes | None = None,
                 custom_labels_first: bool = True) -> bytes:
    """A COSE_Sign1 governance message as `Cose.CreateGovCoseSign1Message` builds it. `custom_labels_first`
    False puts alg and kid first: the header is a map, so a verifier must not depend on the order."""
    custom: dict[Any, Any] = {MSG_TYPE: msg_type, CREATED_AT: int(time.time()) if created_at is None else created_at}
    if proposal_id:
        custom[PROPOSAL_ID] = proposal_id
    standard = {ALG: alg, KID: signer.kid if kid is None else kid}
    header = {**custom, **standard} if custom_labels_first else {**standard, **custom}
    protected = cbor2.dumps(header)
    body = (payload or "").encode("ascii")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, body, sign_raw(signer.key, protected, body)]))


def sign_raw(key: ec.EllipticCurvePrivateKey, protected: bytes, payload: bytes) -> bytes:
    """ES384 as COSE wants it: r‖s, each 48 bytes, over the Sig_structure."""
    der = key.sign(cbor2.dumps(["Signature1", protected, b"", payload]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


@dataclass(frozen=True)
class DecodedEnvelope:
    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes
    protected_bytes: bytes


def decode_envelope(envelope: bytes) -> DecodedEnvelope:
    """Parse a COSE_Sign1 message (tag 18) into its parts; raises ValueError when it is not one."""
    try:
        value = cbor2.loads(envelope)
    except (cbor2.CBORError, EOFError) as exc:
        raise ValueError(f"not CBOR: {exc}") from None
    if not isinstance(value, cbor2.CBORTag) or value.tag != COSE_SIGN1_TAG:
        raise ValueError("not a tagged COSE_Sign1 message")
    if not isinstance(value.value, (list, tuple)) or len(value.value) != 4:
        raise ValueError("COSE_Sign1 must be [protected, unprotected, payload, signature]")
    protected_bytes, unprotected, payload, signature = value.value
    if not isinstance(protected_bytes, bytes) or not isinstance(payload, bytes):
        raise ValueError("COSE_Sign1 protected header and payload must be byte strings")
    return DecodedEnvelope(cbor2.loads(protected_bytes), unprotected, payload, signature, protected_bytes)


def verify_envelope(envelope: bytes, cert: x509.Certificate) -> DecodedEnvelope:
    """Check the ES384 signature of a COSE_Sign1 message against `cert` (raises InvalidSignature)."""
    decoded = decode_envelope(envelope)
    if len(decoded.signature) != 96:
        raise ValueError(f"ES384 signature must be 96 bytes (r‖s), got {len(decoded.signature)}")
    der = encode_dss_signature(int.from_bytes(decoded.signature[:48], "big"),
                               int.from_bytes(decoded.signature[48:], "big"))
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, cbor2.dumps(["Signature1", decoded.protected_bytes, b"", decoded.payload]),
                  ec.ECDSA(hashes.SHA384()))
    return decoded


def proposal_payload(*actions: dict[str, Any]) -> str:
    """cgs-client serialises the proposal with `JsonObject.ToJsonString()`: compact JSON."""
    return json.dumps({"actions": list(actions)}, separators=(",", ":"))


def ballot_payload(accept: bool) -> str:
    return json.dumps({"ballot": BALLOT_ACCEPT if accept else BALLOT_REJECT}, separators=(",", ":"))


def verify_room_signature(envelope: dict[str, Any]) -> bytes:
    """The room's signed write as the reference sidecar makes it: RSA-PSS SHA-256 (salt 32) over the decoded
    `data` bytes, with the key in `sign.publicKey` (base64 of the PEM). Returns the data bytes; raises
    InvalidSignature (or KeyError/ValueError for a malformed envelope)."""
    data = base64.b64decode(envelope["data"], validate=True)
    public = serialization.load_pem_public_key(base64.b64decode(envelope["sign"]["publicKey"], validate=True))
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(envelope["sign"]["signature"], validate=True), data,
                  padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    return data
