"""UVM endorsements: the COSE_Sign1 (RFC 9052) by which the utility VM's signer states its launch
measurement, and the did:x509 issuer that names the signer.

The protected header carries the algorithm, `x5chain` (leaf first), `iss` = a did:x509 DID and `feed`;
the payload is JSON with `x-ms-sevsnpvm-launchmeasurement` and `x-ms-sevsnpvm-guestsvn`. The DID
`did:x509:0:sha256:<b64url fingerprint>::eku:<oid>` pins a CA certificate of the chain by hash and
requires the leaf to carry the EKU, so the DID alone says whom to trust: a verifier keeps a list of
(DID, feed) pairs it accepts.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..common.errors import AttestationError

COSE_SIGN1_TAG = 18
HEADER_ALG, HEADER_CONTENT_TYPE, HEADER_X5CHAIN = 1, 3, 33

# COSE algorithm identifiers (IANA "COSE Algorithms") → (hash, family).
_ALGORITHMS: dict[int, tuple[type[hashes.HashAlgorithm], str]] = {
    -37: (hashes.SHA256, "PS"), -38: (hashes.SHA384, "PS"), -39: (hashes.SHA512, "PS"),
    -7: (hashes.SHA256, "ES"), -35: (hashes.SHA384, "ES"), -36: (hashes.SHA512, "ES"),
}
COSE_ALG_PS384 = -38

MICROSOFT_UVM_DID = ("did:x509:0:sha256:I__iuL25oXEVFdTP_aBLx_eT1RPHbCQ_ECBQfYZpt9s"
                     "::eku:1.3.6.1.4.1.311.76.59.1.2")
MICROSOFT_UVM_FEED = "ContainerPlat-AMD-UVM"
UVM_EKU = "1.3.6.1.4.1.311.76.59.1.2"

_DID_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class UvmEndorser:
    """A (DID, feed) pair whose UVM endorsements a verifier accepts."""

    did: str
    feed: str


@dataclass(frozen=True)
class UvmEndorsement:
    """A verified UVM endorsement."""

    issuer: str
    feed: str
    launch_measurement: str
    guest_svn: str
    payload: Mapping[str, Any]


def did_x509(root: x509.Certificate, eku: str = UVM_EKU) -> str:
    """The did:x509 DID naming `root` by SHA-256 and requiring `eku` on the leaf."""
    fingerprint = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).digest()
    return f"did:x509:0:sha256:{base64.urlsafe_b64encode(fingerprint).rstrip(b'=').decode()}::eku:{eku}"


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def _decode(cose: bytes) -> tuple[bytes, Mapping[Any, Any], bytes, bytes]:
    try:
        obj = cbor2.loads(cose)
    except Exception as exc:  # cbor2 raises several types for malformed input
        raise AttestationError(f"UVM endorsement is not CBOR ({exc})") from None
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise AttestationError(f"UVM endorsement has CBOR tag {obj.tag}, expected COSE_Sign1 (18)")
        obj = obj.value
    if not (isinstance(obj, list | tuple) and len(obj) == 4 and isinstance(obj[0], bytes)
            and isinstance(obj[2], bytes) and isinstance(obj[3], bytes)):
        raise AttestationError("UVM endorsement is not a COSE_Sign1 [protected, unprotected, payload, signature]")
    protected_bytes, _unprotected, payload, signature = obj
    try:
        protected = cbor2.loads(protected_bytes)
    except Exception as exc:
        raise AttestationError(f"UVM endorsement protected header is not CBOR ({exc})") from None
    if not isinstance(protected, Mapping):
        raise AttestationError("UVM endorsement protected header is not a map")
    return protected_bytes, protected, payload, signature


def _chain(protected: Mapping[Any, Any]) -> list[x509.Certificate]:
    raw = protected.get(HEADER_X5CHAIN)
    ders = [raw] if isinstance(raw, bytes) else raw
    if not isinstance(ders, list | tuple) or not ders or not all(isinstance(d, bytes) for d in ders):
        raise AttestationError("UVM endorsement has no x5chain in its protected header")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [x509.load_der_x509_certificate(der) for der in ders]
    except ValueError as exc:
        raise AttestationError(f"UVM endorsement x5chain: not a certificate ({exc})") from None


def resolve_did_x509(did: str, chain: list[x509.Certificate], at: dt.datetime | None) -> None:
    """did:x509 resolution (DIF did:x509 v0): the chain verifies up to the CA the DID names by hash, and
    the leaf satisfies the DID's policies. `at`: check validity periods at that time (None: skip)."""
    prefix = "did:x509:0:"
    if not did.startswith(prefix):
        raise AttestationError(f"UVM endorsement issuer {did!r} is not a did:x509 v0 DID")
    ca_part, *policies = did[len(prefix):].split("::")
    hash_name, _, fingerprint = ca_part.partition(":")
    if hash_name not in _DID_HASHES or not fingerprint or not policies:
        raise AttestationError(f"UVM endorsement issuer {did!r} is malformed")
    for child, parent in zip(chain, chain[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise AttestationError("UVM endorsement x5chain does not verify: "
                                   f"{child.subject.rfc4514_string()} is not signed by its successor") from None
    if at is not None:
        for cert in chain:
            if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
                raise AttestationError(f"UVM endorsement certificate {cert.subject.rfc4514_string()} "
                                       "was not valid at the endorsement's signing time")
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain[1:]]
    digests = {base64.urlsafe_b64encode(_DID_HASHES[hash_name](der).digest()).rstrip(b"=").decode() for der in ders}
    if fingerprint not in digests:
        raise AttestationError("UVM endorsement x5chain does not contain the CA its issuer DID names")
    leaf = chain[0]
    for policy in policies:
        name, _, value = policy.partition(":")
        if name != "eku":
            raise AttestationError(f"UVM endorsement issuer DID uses unsupported policy {name!r}")
        try:
            ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            ekus = []
        if value not in {oid.dotted_string for oid in ekus}:
            raise AttestationError(f"UVM endorsement signer lacks the EKU {value} its issuer DID requires")


def _verify_signature(leaf: x509.Certificate, alg: Any, to_be_signed: bytes, signature: bytes) -> None:
    if alg not in _ALGORITHMS:
        raise AttestationError(f"UVM endorsement uses unsupported COSE algorithm {alg!r}")
    hash_cls, family = _ALGORITHMS[alg]
    key = leaf.public_key()
    try:
        if family == "PS" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, to_be_signed,
                       padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls.digest_size), hash_cls())
        elif family == "ES" and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
            key.verify(der, to_be_signed, ec.ECDSA(hash_cls()))
        else:
            raise AttestationError(f"UVM endorsement algorithm {alg} does not match the signer's key type")
    except InvalidSignature:
        raise AttestationError("UVM endorsement signature does not verify") from None


# The same endorsement accompanies every report of a utility VM: remember the ones that verified.
@lru_cache(maxsize=64)
def verify_uvm_endorsement(cose: bytes, endorsers: tuple[UvmEndorser, ...]) -> UvmEndorsement:
    """Verify the COSE_Sign1 and return its claims; the caller compares the measurement with the report."""
    protected_bytes, protected, payload, signature = _decode(cose)
    issuer, feed = protected.get("iss"), protected.get("feed")
    if not isinstance(issuer, str) or not isinstance(feed, str):
        raise AttestationError("UVM endorsement protected header lacks iss or feed")
    if UvmEndorser(issuer, feed) not in endorsers:
        raise AttestationError(f"UVM endorsement from an untrusted issuer/feed ({issuer}, {feed})")
    chain = _chain(protected)
    signing_time = protected.get("signingtime")
    at = signing_time if isinstance(signing_time, dt.datetime) else None
    resolve_did_x509(issuer, chain, at)
    _verify_signature(chain[0], protected.get(HEADER_ALG), sig_structure(protected_bytes, payload), signature)
    try:
        claims = json.loads(payload)
    except ValueError:
        raise AttestationError("UVM endorsement payload is not JSON") from None
    measurement = claims.get("x-ms-sevsnpvm-launchmeasurement") if isinstance(claims, dict) else None
    if not isinstance(measurement, str):
        raise AttestationError("UVM endorsement payload lacks x-ms-sevsnpvm-launchmeasurement")
    return UvmEndorsement(issuer=issuer, feed=feed, launch_measurement=measurement.lower(),
                          guest_svn=str(claims.get("x-ms-sevsnpvm-guestsvn", "")),
                          payload=MappingProxyType(claims))
