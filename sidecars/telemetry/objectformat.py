"""Exported objects in the volumes' encrypted object format (ARCHITECTURE §5), behind a small interface.

`seal(dek, place, plaintext)` / `unseal(dek, place, ciphertext)`, where `place` is the object's
account/container/blob name: the associated data that binds an object to where it was written, so a
tampered, truncated, reordered or moved object is refused.

The wire format is Tink's streaming AEAD AES-GCM-HKDF (segmented): header `len ‖ salt ‖ 7-byte nonce
prefix`; segment key = HKDF-SHA256(DEK, salt, info=associated data); segment nonce = prefix ‖ u32
segment index ‖ last-segment flag. This module holds the telemetry sidecar's own codec of that format
until the volumes helper's `sidecars/volumes/format.py` is on main; then it delegates to it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from urllib.parse import urlparse

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..common.errors import CcrError, ConfigError

KEY_SIZE = 32
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
SEGMENT_SIZE = 1 << 20  # ciphertext bytes per segment
HEADER_SIZE = 1 + KEY_SIZE + NONCE_PREFIX_SIZE


class ObjectVerificationError(CcrError):
    """An object did not decrypt under its key and place: tampered, truncated, moved or the wrong key."""

    code = "ObjectVerificationFailed"
    http_status = 400


@dataclass(frozen=True)
class ObjectPlace:
    """Where an object lives; its text form is the associated data."""

    account: str
    container: str
    blob: str

    @classmethod
    def of(cls, account_url: str, container: str, blob: str) -> ObjectPlace:
        return cls(account_name(account_url), container, blob)

    @property
    def associated_data(self) -> bytes:
        return f"{self.account}/{self.container}/{self.blob}".encode()


def account_name(account_url: str) -> str:
    """`https://NAME.blob.core.windows.net` → NAME; `http://127.0.0.1:P/NAME` (Azurite) → NAME."""
    url = urlparse(account_url)
    path = url.path.strip("/")
    if path:
        return path.split("/")[0]
    return (url.hostname or "").split(".")[0]


@dataclass(frozen=True)
class DataKey:
    """A sink's data encryption key (AES-256)."""

    material: bytes

    def __post_init__(self) -> None:
        if len(self.material) != KEY_SIZE:
            raise ConfigError(f"a data encryption key is {KEY_SIZE} bytes, not {len(self.material)}")

    @classmethod
    def from_hex(cls, text: str) -> DataKey:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise ConfigError("a data encryption key file holds 64 hex digits") from None

    def __repr__(self) -> str:
        return "DataKey(<secret>)"


def seal(key: DataKey, place: ObjectPlace, plaintext: bytes) -> bytes:
    salt = os.urandom(KEY_SIZE)
    prefix = os.urandom(NONCE_PREFIX_SIZE)
    aead = AESGCM(_segment_key(key, salt, place))
    out = [bytes([HEADER_SIZE]), salt, prefix]
    segments = _split(plaintext)
    for index, segment in enumerate(segments):
        out.append(aead.encrypt(_nonce(prefix, index, index == len(segments) - 1), segment, None))
    return b"".join(out)


def unseal(key: DataKey, place: ObjectPlace, ciphertext: bytes) -> bytes:
    if len(ciphertext) < HEADER_SIZE + TAG_SIZE or ciphertext[0] != HEADER_SIZE:
        raise ObjectVerificationError(f"{place.blob}: not an encrypted object (bad header)")
    salt = ciphertext[1:1 + KEY_SIZE]
    prefix = ciphertext[1 + KEY_SIZE:HEADER_SIZE]
    aead = AESGCM(_segment_key(key, salt, place))
    body = ciphertext[HEADER_SIZE:]
    first = SEGMENT_SIZE - HEADER_SIZE
    bounds = [(0, min(first, len(body)))]
    while bounds[-1][1] < len(body):
        start = bounds[-1][1]
        bounds.append((start, min(start + SEGMENT_SIZE, len(body))))
    out = []
    for index, (start, end) in enumerate(bounds):
        try:
            out.append(aead.decrypt(_nonce(prefix, index, index == len(bounds) - 1), body[start:end], None))
        except InvalidTag:
            raise ObjectVerificationError(
                f"{place.blob}: segment {index} failed authentication (tampered, truncated, moved from "
                "another place, or the wrong key)") from None
    return b"".join(out)


def _split(plaintext: bytes) -> list[bytes]:
    first = SEGMENT_SIZE - HEADER_SIZE - TAG_SIZE
    segments = [plaintext[:first]]
    rest = plaintext[first:]
    size = SEGMENT_SIZE - TAG_SIZE
    while rest:
        segments.append(rest[:size])
        rest = rest[size:]
    return segments


def _segment_key(key: DataKey, salt: bytes, place: ObjectPlace) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt,
                info=place.associated_data).derive(key.material)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")
