"""The encrypted, append-only buffer of everything the sidecar received.

Nothing received is kept in clear on disk: each request (serialized OTLP protobuf) is one AES-256-GCM
record in an append-only file, under a key generated in memory at start that is never written anywhere.
A restarted sidecar therefore cannot read what an earlier one buffered, which is the point: the key
never leaves the room, and an old buffer file is discarded at start.

Record layout: `u32 length ‖ 12-byte random nonce ‖ ciphertext+tag`; the plaintext is `u8 signal ‖
payload`; the associated data is the record's sequence number, so records cannot be reordered or
dropped from the middle unnoticed.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..common.errors import CcrError
from .signals import Signal

_LENGTH = struct.Struct(">I")
_SEQUENCE = struct.Struct(">Q")
_NONCE_SIZE = 12
_AD_PREFIX = b"ccr-telemetry-buffer/v1/"


class BufferCorrupted(CcrError):
    code = "BufferCorrupted"


@dataclass(frozen=True)
class _Entry:
    signal: Signal
    offset: int
    length: int


class EncryptedBuffer:
    """Thread-safe: the gRPC server threads and the HTTP server append, the exporter reads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        # "w+b" truncates: a buffer left by an earlier process is unreadable without its key anyway.
        self._file = open(self.path, "w+b", buffering=0)  # noqa: SIM115 - lives as long as the buffer
        os.chmod(self.path, 0o600)
        self._size = 0

    def append(self, signal: Signal, payload: bytes) -> int:
        """Encrypt and append one record; returns its sequence number."""
        with self._lock:
            sequence = len(self._entries)
            nonce = os.urandom(_NONCE_SIZE)
            sealed = self._aead.encrypt(nonce, bytes([signal.value]) + payload, _associated_data(sequence))
            record = _LENGTH.pack(len(nonce) + len(sealed)) + nonce + sealed
            self._file.seek(self._size)
            self._file.write(record)
            self._entries.append(_Entry(signal, self._size + _LENGTH.size, len(nonce) + len(sealed)))
            self._size += len(record)
            return sequence

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def read(self, signals: tuple[Signal, ...], start: int = 0, stop: int | None = None) -> Iterator[
            tuple[Signal, bytes]]:
        """Decrypt the records with sequence numbers in [start, stop) that belong to `signals`."""
        with self._lock:
            entries = list(enumerate(self._entries))[start:stop]
        for sequence, entry in entries:
            if entry.signal not in signals:
                continue
            raw = os.pread(self._file.fileno(), entry.length, entry.offset)
            try:
                plain = self._aead.decrypt(raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], _associated_data(sequence))
            except Exception as exc:
                raise BufferCorrupted(f"buffer record {sequence} in {self.path} failed authentication") from exc
            if plain[0] != entry.signal.value:
                raise BufferCorrupted(f"buffer record {sequence} in {self.path} has the wrong signal")
            yield entry.signal, plain[1:]

    def close(self) -> None:
        self._file.close()


def _associated_data(sequence: int) -> bytes:
    return _AD_PREFIX + _SEQUENCE.pack(sequence)
