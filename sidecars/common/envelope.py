"""The room's envelope for CGS requests, as the Azure clean room's governance sidecar builds it.

A room proves itself with `{platform: "snp-caci", attestation: {evidence, endorsements, uvm_endorsements}}`
(a consent check sends only that), plus `encrypt: {publicKey}` when the answer is wrapped to its key: the SNP
report's REPORT_DATA is sha256(public key PEM) ‖ 32 zero bytes, so the key belongs to the attested room.
Writes add `data` (base64 of the JSON bytes), `timestamp` (ms since the epoch) and `sign: {signature,
publicKey}`: RSA-PSS-SHA256 with a 32-byte salt over the decoded `data` bytes alone, exactly what the
reference's `Signing.SignData` signs and what CGS verifies, so a real CGS accepts our writes. The timestamp
is not signed (the reference does not sign it either); see `sidecars.emulators.cgs.room` for what stops a
replay. Answers are wrapped to the room's key: RSA-OAEP-SHA256(temporary AES key) ‖ AES-KWP (RFC 5649).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from .errors import BadRequest

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise BadRequest(f"{what} is not valid base64") from None


def report_data_for(public_key_pem: bytes) -> bytes:
    """The 64-byte REPORT_DATA binding a report to a key: sha256(PEM) ‖ 32 zero bytes."""
    return hashlib.sha256(public_key_pem).digest() + bytes(32)


def wrap(recipient_pem: bytes, plaintext: bytes) -> bytes:
    key = serialization.load_pem_public_key(recipient_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadRequest("encrypt.publicKey must be an RSA public key")
    transport_key = os.urandom(32)
    return key.encrypt(transport_key, OAEP) + aes_key_wrap_with_padding(transport_key, plaintext)


def attested(attestation: Attestation) -> dict[str, Any]:
    """The envelope of a request that needs only the room's evidence (a consent check)."""
    return {"platform": "snp-caci", "attestation": attestation.to_json()}


class UnwrapError(BadRequest):
    code = "UnwrapFailed"


@dataclass(frozen=True)
class Attestation:
    """The three base64 blobs of the envelope's `attestation` object."""

    evidence: str
    endorsements: str
    uvm_endorsements: str

    def to_json(self) -> dict[str, str]:
        return {"evidence": self.evidence, "endorsements": self.endorsements,
                "uvm_endorsements": self.uvm_endorsements}


class RoomKey:
    """The room's RSA key pair: its public key is bound to the attestation report, it signs writes and
    unwraps answers."""

    def __init__(self, private_key: rsa.RSAPrivateKey):
        self._key = private_key
        self.public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @classmethod
    def generate(cls) -> RoomKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def report_data(self) -> bytes:
        return report_data_for(self.public_pem)

    def request(self, attestation: Attestation) -> dict[str, Any]:
        """A release's envelope: the evidence and the key the answer is wrapped to."""
        return {**attested(attestation), "encrypt": {"publicKey": b64(self.public_pem)}}

    def signed_request(self, attestation: Attestation, data: Any, *, now_ms: int | None = None) -> dict[str, Any]:
        """A write's envelope: `data` as compact JSON bytes, signed afresh (PSS is randomised, so no two
        signings of one write are alike)."""
        data_bytes = json.dumps(data, separators=(",", ":")).encode()
        signature = self._key.sign(data_bytes, PSS, hashes.SHA256())
        return {"data": b64(data_bytes), "timestamp": str(now_ms if now_ms is not None else int(time.time() * 1000)),
                "sign": {"signature": b64(signature), "publicKey": b64(self.public_pem)}, **self.request(attestation)}

    def unwrap(self, wrapped_b64: str) -> bytes:
        blob = unb64(wrapped_b64, "value")
        split = self._key.key_size // 8
        try:
            transport_key = self._key.decrypt(blob[:split], OAEP)
            return aes_key_unwrap_with_padding(transport_key, blob[split:])
        except (ValueError, InvalidUnwrap):
            raise UnwrapError("the answer was not wrapped to this room's key, or was altered") from None


def verify_signature(public_pem: bytes, signature: bytes, message: bytes) -> bool:
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, message, PSS, hashes.SHA256())
    except InvalidSignature:
        return False
    return True
