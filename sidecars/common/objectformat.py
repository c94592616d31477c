"""The encrypted object format: Tink's streaming AEAD wire format, AES-GCM-HKDF, with random access.

Every object a volume stores (and every object telemetry exports) is one Tink AES-GCM-HKDF streaming
ciphertext, byte for byte what Tink writes for an `AesGcmHkdfStreamingKey` with a 32-byte key, 32-byte
derived keys, HKDF-SHA256 and `SEGMENT_SIZE`-byte ciphertext segments:

    header   = header_length (1 byte, = 40) ‖ salt (32 bytes) ‖ nonce prefix (7 bytes)
    segment  = AES-256-GCM(segment key, nonce, plaintext chunk), 16-byte tag appended, no GCM AAD
    nonce    = nonce prefix ‖ segment index (4 bytes, big-endian) ‖ last-segment flag (1 byte, 0 or 1)
    seg. key = HKDF-SHA256(ikm = DEK, salt = salt, info = associated data, length = 32)
    object   = header ‖ segment 0 ‖ segment 1 ‖ … ‖ last segment
    segment 0 holds SEGMENT_SIZE - 40 - 16 plaintext bytes (the header shares its ciphertext segment),
    the others SEGMENT_SIZE - 16; only the last one may be shorter (an empty object is one empty segment).

So ciphertext segment i always starts at byte i × SEGMENT_SIZE and can be fetched and decrypted alone.
The nonce binds each segment to its position and to whether it ends the object (reordering, dropping the
tail, or appending are detected); the associated data binds the whole object to its place (see
`ObjectLocation`), so a blob copied over another one does not decrypt. The plaintext size follows from
the ciphertext size alone, which lets a directory listing show plaintext sizes without any key.

Why 64 KiB segments (measured here with azure-storage-blob against Azurite over HTTPS, median of 40
ranged GETs at random offsets): 4 KiB 3.5 ms, 16 KiB 3.1 ms, 64 KiB 3.3 ms, 256 KiB 4.4 ms, 1 MiB
10.1 ms. Below 64 KiB a GET costs the same (per-request overhead dominates), above it the transfer
shows, so 64 KiB is the largest segment whose random read is as cheap as the smallest one; a 4 KiB
random read through the mount is one such GET. AES-GCM runs at several GB/s per core at that size, far
above storage throughput, and sequential reads are not limited by segment size because read-ahead
fetches many segments per GET. The tag costs 16 B per 64 KiB (0.02 %).

Usage (the key object carries its parameters; there is no mode flag to get wrong):

    key = DataKey.generate()
    where = ObjectLocation("devstoreaccount1", "publisher-input", "dir/file.csv")
    blob = encrypt(key, where, data)                # whole object
    data = decrypt(key, where, blob)                # raises TamperedObject on any change
    enc = Encryptor(key, where); enc.update(chunk) … enc.finish()   # streaming, emits whole segments
    reader = SegmentReader(key, where, header, ciphertext_size)     # random access by segment
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CcrError

KEY_SIZE = 32
SALT_SIZE = 32  # Tink: the salt is as long as the derived key
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
HEADER_SIZE = 1 + SALT_SIZE + NONCE_PREFIX_SIZE
SEGMENT_SIZE = 64 * 1024
FORMAT_NAME = "tink-streaming-aes256-gcm-hkdf-sha256"


class TamperedObject(CcrError):
    """The ciphertext is not what the key's holder wrote at this place: changed, truncated, extended,
    reordered, moved from another blob, or encrypted with another key."""

    code = "TamperedObject"
    http_status = 422


class DataKey:
    """A data encryption key (DEK) with its streaming parameters. The key bytes stay inside; they leave
    only through `wrap` helpers in `keys.py` (never logged: `repr` shows a fingerprint)."""

    __slots__ = ("_material", "segment_size")

    def __init__(self, material: bytes, *, segment_size: int = SEGMENT_SIZE):
        if len(material) != KEY_SIZE:
            raise ValueError(f"a data key is {KEY_SIZE} bytes, got {len(material)}")
        if not HEADER_SIZE + TAG_SIZE < segment_size <= 2**31:
            raise ValueError(f"segment size {segment_size} out of range")
        self._material = bytes(material)
        self.segment_size = segment_size

    @classmethod
    def generate(cls, *, segment_size: int = SEGMENT_SIZE) -> DataKey:
        return cls(os.urandom(KEY_SIZE), segment_size=segment_size)

    def export_material(self) -> bytes:
        """The raw key bytes, for wrapping with a KEK. Callers must not store or log them in clear."""
        return self._material

    @property
    def fingerprint(self) -> str:
        """A non-secret identifier of the key (first 16 hex digits of sha256 over a domain tag)."""
        return hashlib.sha256(b"ccr-dek-fingerprint\0" + self._material).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"DataKey(fingerprint={self.fingerprint}, segment_size={self.segment_size})"

    def _segment_cipher(self, salt: bytes, associated_data: bytes) -> AESGCM:
        derived = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt,
                       info=associated_data).derive(self._material)
        return AESGCM(derived)


@dataclass(frozen=True)
class ObjectLocation:
    """Where an object lives; its encoding is the associated data every segment key is derived from.

    Encoding: b"ccr/blob/v1" then, for account, container and blob name in that order, the UTF-8 bytes
    each preceded by their length as 4 bytes big-endian. Length prefixes make the encoding injective
    ("a/b" + "c" never equals "a" + "b/c"). The account is the storage account *name* (not the endpoint
    URL), so the same data stays readable through another endpoint of the same account.
    """

    account: str
    container: str
    blob: str

    def associated_data(self) -> bytes:
        out = bytearray(b"ccr/blob/v1")
        for part in (self.account, self.container, self.blob):
            encoded = part.encode("utf-8")
            out += struct.pack(">I", len(encoded)) + encoded
        return bytes(out)

    def __str__(self) -> str:
        return f"{self.account}/{self.container}/{self.blob}"


@dataclass(frozen=True)
class Layout:
    """Where segments sit in an object of a given ciphertext size (no key needed)."""

    segment_size: int
    ciphertext_size: int
    segment_count: int
    plaintext_size: int

    @property
    def first_plaintext(self) -> int:
        return self.segment_size - HEADER_SIZE - TAG_SIZE

    @property
    def plaintext_per_segment(self) -> int:
        return self.segment_size - TAG_SIZE

    def ciphertext_range(self, index: int) -> tuple[int, int]:
        """[start, end) of segment `index` in the object, header excluded for segment 0."""
        self._check_index(index)
        start = HEADER_SIZE if index == 0 else index * self.segment_size
        return start, min((index + 1) * self.segment_size, self.ciphertext_size)

    def plaintext_range(self, index: int) -> tuple[int, int]:
        self._check_index(index)
        start = 0 if index == 0 else self.first_plaintext + (index - 1) * self.plaintext_per_segment
        end = self.first_plaintext if index == 0 else start + self.plaintext_per_segment
        return start, min(end, self.plaintext_size)

    def segment_of(self, plaintext_offset: int) -> int:
        if plaintext_offset < self.first_plaintext:
            return 0
        return 1 + (plaintext_offset - self.first_plaintext) // self.plaintext_per_segment

    def segments_for(self, offset: int, length: int) -> range:
        """Segments holding plaintext bytes [offset, offset + length), clipped to the object."""
        end = min(offset + length, self.plaintext_size)
        if length <= 0 or offset >= end:
            return range(0)
        return range(self.segment_of(offset), self.segment_of(end - 1) + 1)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.segment_count:
            raise IndexError(f"segment {index} out of range (object has {self.segment_count})")


def layout(ciphertext_size: int, segment_size: int = SEGMENT_SIZE) -> Layout:
    """The segment layout of a ciphertext of this size; TamperedObject if no valid object has it."""
    if ciphertext_size < HEADER_SIZE + TAG_SIZE:
        raise TamperedObject(f"ciphertext of {ciphertext_size} bytes is shorter than header and one tag")
    count, rest = divmod(ciphertext_size, segment_size)
    if rest:
        count += 1
        if rest < TAG_SIZE or (count == 1 and rest < HEADER_SIZE + TAG_SIZE):
            raise TamperedObject(f"ciphertext of {ciphertext_size} bytes ends inside a segment tag")
    plaintext = ciphertext_size - HEADER_SIZE - count * TAG_SIZE
    return Layout(segment_size, ciphertext_size, count, plaintext)


def plaintext_size(ciphertext_size: int, segment_size: int = SEGMENT_SIZE) -> int:
    return layout(ciphertext_size, segment_size).plaintext_size


def ciphertext_size(plaintext_size: int, segment_size: int = SEGMENT_SIZE) -> int:
    first = segment_size - HEADER_SIZE - TAG_SIZE
    later = max(0, plaintext_size - first)
    count = 1 + -(-later // (segment_size - TAG_SIZE))
    return HEADER_SIZE + plaintext_size + count * TAG_SIZE


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class SegmentReader:
    """Decrypts any segment of one object independently, given its header and total ciphertext size."""

    def __init__(self, key: DataKey, location: ObjectLocation, header: bytes, ciphertext_size: int):
        self.location = location
        self.layout = layout(ciphertext_size, key.segment_size)
        if len(header) < HEADER_SIZE or header[0] != HEADER_SIZE:
            raise TamperedObject(f"{location}: bad header (length byte {header[:1].hex() or 'missing'})")
        salt = bytes(header[1:1 + SALT_SIZE])
        self._prefix = bytes(header[1 + SALT_SIZE:HEADER_SIZE])
        self._cipher = key._segment_cipher(salt, location.associated_data())

    @property
    def plaintext_size(self) -> int:
        return self.layout.plaintext_size

    def decrypt_segment(self, index: int, ciphertext: bytes | memoryview) -> bytes:
        """Plaintext of segment `index`; `ciphertext` is exactly `layout.ciphertext_range(index)`."""
        start, end = self.layout.ciphertext_range(index)
        if len(ciphertext) != end - start:
            raise TamperedObject(f"{self.location}: segment {index} has {len(ciphertext)} bytes, "
                                 f"expected {end - start}")
        last = index == self.layout.segment_count - 1
        try:
            return self._cipher.decrypt(_nonce(self._prefix, index, last), ciphertext, None)
        except InvalidTag:
            raise TamperedObject(f"{self.location}: segment {index} failed authentication") from None

    def decrypt_range(self, first: int, ciphertext: bytes | memoryview) -> Iterator[bytes]:
        """Plaintext of consecutive segments starting at `first`, given their concatenated ciphertext
        (as one ranged GET returns it, from `ciphertext_range(first)[0]`)."""
        view = memoryview(ciphertext)
        index, pos = first, 0
        while pos < len(view):
            start, end = self.layout.ciphertext_range(index)
            yield self.decrypt_segment(index, view[pos:pos + end - start])
            pos += end - start
            index += 1


class Encryptor:
    """Streaming encryption: `update` returns the ciphertext of every segment that is complete and known
    not to be the last; `finish` returns the rest. Output starts with the header."""

    def __init__(self, key: DataKey, location: ObjectLocation):
        salt, self._prefix = os.urandom(SALT_SIZE), os.urandom(NONCE_PREFIX_SIZE)
        self._cipher = key._segment_cipher(salt, location.associated_data())
        self._segment_size = key.segment_size
        self._pending = bytearray()
        self._index = 0
        self._header = bytes([HEADER_SIZE]) + salt + self._prefix
        self._finished = False
        self.plaintext_written = 0

    def _capacity(self) -> int:
        return self._segment_size - TAG_SIZE - (HEADER_SIZE if self._index == 0 else 0)

    def _seal(self, chunk: bytes | memoryview, last: bool) -> bytes:
        sealed = self._cipher.encrypt(_nonce(self._prefix, self._index, last), chunk, None)
        if self._index == 0:
            sealed = self._header + sealed
        self._index += 1
        return sealed

    def update(self, data: bytes | memoryview) -> bytes:
        return b"".join(self.update_segments(data))

    def update_segments(self, data: bytes | memoryview) -> list[bytes]:
        """Like `update`, one bytes object per sealed segment (the first one carries the header), with
        no copy of the input beyond a partial segment."""
        if self._finished:
            raise ValueError("encryptor already finished")
        view = memoryview(data).cast("B")
        self.plaintext_written += len(view)
        out: list[bytes] = []
        pos = 0
        if self._pending:
            take = min(self._capacity() - len(self._pending), len(view))
            self._pending += view[:take]
            pos = take
            if pos == len(view):
                return out
            # The pending segment is full and more data follows: it is not the last one.
            out.append(self._seal(bytes(self._pending), last=False))
            self._pending = bytearray()
        # A full segment is sealed only once a byte beyond it exists: until then it may be the last one.
        while len(view) - pos > self._capacity():
            capacity = self._capacity()
            out.append(self._seal(view[pos:pos + capacity], last=False))
            pos += capacity
        self._pending += view[pos:]
        return out

    def finish(self) -> bytes:
        if self._finished:
            raise ValueError("encryptor already finished")
        self._finished = True
        sealed = self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        return sealed


def encrypt(key: DataKey, location: ObjectLocation, plaintext: bytes | memoryview) -> bytes:
    encryptor = Encryptor(key, location)
    return encryptor.update(plaintext) + encryptor.finish()


def decrypt(key: DataKey, location: ObjectLocation, ciphertext: bytes | memoryview) -> bytes:
    """The whole plaintext; TamperedObject if any byte of the object is not authentic."""
    reader = SegmentReader(key, location, bytes(ciphertext[:HEADER_SIZE]), len(ciphertext))
    start = reader.layout.ciphertext_range(0)[0]
    return b"".join(reader.decrypt_range(0, memoryview(ciphertext)[start:]))
