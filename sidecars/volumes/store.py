"""Objects of one volume in its store (Azure Blob or S3: `stores/`), in the volume's encryption mode.

`ObjectReader` fetches segments with ranged GETs (one GET may cover many consecutive segments) and
returns authenticated plaintext; `ObjectWriter` encrypts as data arrives, stages full parts in parallel
and commits them only in `commit()` (Blob's block list, S3's CompleteMultipartUpload): until then storage
holds no object under the name (or still the previous one), so an interrupted upload never leaves
something that looks complete.

Modes: CSE objects are the Tink format of `sidecars.common.objectformat`, the same over every store kind.
CPK, SSE-C and SSE objects are the plain bytes (storage encrypts them, with our DEK sent along each request
for CPK and SSE-C); they use the same segment arithmetic without a header or tags, so the filesystem code is
the same for every mode.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from azure.storage.blob import ContainerClient

from ..common import objectformat as fmt
from ..common.errors import RemoteServiceError
from ..spec import MODES_OF_STORE, EncryptionMode
from .manifest import Entry
from .stores import ObjectStore
from .stores.azure_blob import AzureBlobStore, as_ccr

BLOCK_SEGMENTS = 64  # segments per ranged GET and per readahead step (4 MiB)
FORMAT_METADATA = "ccrformat"


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    stored_size: int
    plaintext_size: int
    last_modified: float


class Volume:
    """One container or bucket (an `ObjectStore` of any kind) in one mode, with its DEK (None only for SSE)."""

    def __init__(self, store: ObjectStore | ContainerClient, mode: EncryptionMode, key: fmt.DataKey | None):
        if (key is None) != (mode is EncryptionMode.SSE):
            raise ValueError(f"mode {mode.value} {'needs' if key is None else 'takes no'} data key")
        if isinstance(store, ContainerClient):  # an Azure container as the owner's tools and benchmarks open it
            store = AzureBlobStore(store, customer_key_material(mode, key))
        if mode not in MODES_OF_STORE[store.kind]:
            raise ValueError(f"mode {mode.value} is not offered by {store.service}")
        self.store = store
        self.mode = mode
        self.key = key
        self.account = store.account
        self.container = store.container
        self.segment_size = key.segment_size if key else fmt.SEGMENT_SIZE

    def location(self, name: str) -> fmt.ObjectLocation:
        return self.store.location(name)

    def plaintext_size(self, stored_size: int) -> int:
        if self.mode is EncryptionMode.CSE:
            return fmt.plaintext_size(stored_size, self.segment_size)
        return stored_size

    def list_objects(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        """Committed objects; a CSE object whose size no valid object has is listed with size 0 (its reads
        fail) rather than hidden, so tampering is visible."""
        for stored in self.store.list(prefix):
            try:
                size = self.plaintext_size(stored.stored_size)
            except fmt.TamperedObject:
                size = 0
            yield ObjectInfo(stored.name, stored.stored_size, size, stored.last_modified)

    def reader(self, name: str, stored_size: int, *, expected_header: bytes | None = None) -> ObjectReader:
        return ObjectReader(self, name, stored_size, expected_header=expected_header)

    def writer(self, name: str, *, parallelism: int | None = None) -> ObjectWriter:
        return ObjectWriter(self, name, parallelism=parallelism or self.store.upload_parallelism)

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def get_small(self, name: str, limit: int) -> bytes | None:
        """A whole small object (a manifest), None if it does not exist; refused past `limit` bytes."""
        return self.store.get_small(name, limit)

    def put_small(self, name: str, data: bytes) -> None:
        """Store a small object in one request (a manifest: plain JSON, its integrity is its pin or signature)."""
        self.store.put_small(name, data)

    def get_range(self, name: str, start: int, end: int) -> bytes:
        return self.store.get_range(name, start, end)


def customer_key_material(mode: EncryptionMode, key: fmt.DataKey | None) -> bytes | None:
    """The key storage encrypts with in CPK and SSE-C (the DEK's 256 bits), None in the other modes."""
    if mode in (EncryptionMode.CPK, EncryptionMode.SSE_C) and key is not None:
        return key.export_material()
    return None


class _PlainLayout:
    """Segment arithmetic of CPK/SSE objects: fixed-size ranges of the stored bytes."""

    def __init__(self, size: int, segment_size: int):
        self.plaintext_size = self.ciphertext_size = size
        self.segment_size = segment_size
        self.segment_count = max(1, -(-size // segment_size))

    def ciphertext_range(self, index: int) -> tuple[int, int]:
        return index * self.segment_size, min((index + 1) * self.segment_size, self.plaintext_size)

    plaintext_range = ciphertext_range

    def segments_for(self, offset: int, length: int) -> range:
        end = min(offset + length, self.plaintext_size)
        if length <= 0 or offset >= end:
            return range(0)
        return range(offset // self.segment_size, (end - 1) // self.segment_size + 1)


class ObjectReader:
    """Random access to one object's plaintext by segment. Thread-safe; every byte returned is authentic
    (CSE) or comes from storage as is (CPK/SSE). Raises TamperedObject on any inconsistency."""

    def __init__(self, volume: Volume, name: str, stored_size: int, *, expected_header: bytes | None = None):
        """`expected_header`: the CSE header a manifest pins; any other version of the object (an older one
        written back, whose segments authenticate under its own header) is then refused."""
        self.volume = volume
        self.name = name
        self.stored_size = stored_size
        self.expected_header = expected_header
        self._lock = threading.Lock()
        self._segments: fmt.SegmentReader | None = None
        if volume.mode is EncryptionMode.CSE:
            self.layout: fmt.Layout | _PlainLayout = fmt.layout(stored_size, volume.segment_size)
        else:
            self.layout = _PlainLayout(stored_size, volume.segment_size)

    @property
    def plaintext_size(self) -> int:
        return self.layout.plaintext_size

    def _segment_reader(self, header: bytes) -> fmt.SegmentReader:
        with self._lock:
            if self._segments is None:
                assert self.volume.key is not None
                if self.expected_header is not None and bytes(header) != self.expected_header:
                    raise fmt.TamperedObject(f"{self.volume.location(self.name)}: not the version the manifest "
                                             "names (another header: replaced or rolled back)")
                self._segments = fmt.SegmentReader(self.volume.key, self.volume.location(self.name), header,
                                                   self.stored_size)
            return self._segments

    def verify_header(self) -> None:
        """Fetch the header now (one small GET) and check it against the manifest's, so that a replaced object
        fails at open rather than at its first read."""
        if self.volume.mode is EncryptionMode.CSE and self._segments is None:
            self._segment_reader(self.volume.get_range(self.name, 0, fmt.HEADER_SIZE))

    def fetch(self, first: int, last: int, stored=None) -> list[bytes]:
        """Plaintext of segments first..last inclusive, with one ranged GET. `stored`, if given, is called
        with the stored bytes fetched (from byte 0 when `first` is 0), before they are decrypted."""
        if self.volume.mode is not EncryptionMode.CSE:
            start, end = self.layout.ciphertext_range(first)[0], self.layout.ciphertext_range(last)[1]
            data = self.volume.get_range(self.name, start, end) if end > start else b""
            if stored is not None:
                stored(data)
            size = self.volume.segment_size
            return [data[i:i + size] for i in range(0, max(len(data), 1), size)]
        start = self.layout.ciphertext_range(first)[0]
        end = self.layout.ciphertext_range(last)[1]
        fetch_from = 0 if first == 0 else start
        data = self.volume.get_range(self.name, fetch_from, end)
        if len(data) != end - fetch_from:
            raise fmt.TamperedObject(f"{self.volume.location(self.name)}: storage returned {len(data)} bytes "
                                     f"for a range of {end - fetch_from} (object changed while reading)")
        if stored is not None:
            stored(data)
        header = data[:fmt.HEADER_SIZE] if first == 0 else None
        if self._segments is None:
            self._segment_reader(header or self.volume.get_range(self.name, 0, fmt.HEADER_SIZE))
        assert self._segments is not None
        if header is not None and self.expected_header is not None and bytes(header) != self.expected_header:
            # The header was pinned before; storage now serves another version's.
            raise fmt.TamperedObject(f"{self.volume.location(self.name)}: not the version the manifest names "
                                     "(another header: replaced or rolled back)")
        return list(self._segments.decrypt_range(first, memoryview(data)[start - fetch_from:]))

    def read_all(self, chunk_segments: int = BLOCK_SEGMENTS, stored=None) -> Iterator[bytes]:
        """Every segment's plaintext in order (one GET per `chunk_segments`); `stored` sees every stored byte
        once, in order (for a digest of the whole object)."""
        count = self.layout.segment_count
        for first in range(0, count, chunk_segments):
            yield from self.fetch(first, min(first + chunk_segments, count) - 1, stored)


class ObjectWriter:
    """Sequential writer: `write` encrypts and stages parts in the background as they fill, `commit`
    stages the rest and commits the parts, `abort` drops everything (nothing committed)."""

    def __init__(self, volume: Volume, name: str, *, parallelism: int = 4):
        self.volume = volume
        self.name = name
        self._encryptor = (fmt.Encryptor(volume.key, volume.location(name))
                           if volume.mode is EncryptionMode.CSE and volume.key else None)
        # CSE objects say so in their metadata from the start (S3 takes metadata only when an upload begins).
        start_metadata = ({FORMAT_METADATA: f"{fmt.FORMAT_NAME};segment={volume.segment_size}"}
                          if volume.mode is EncryptionMode.CSE else {})
        self._upload = volume.store.upload(name, start_metadata)
        self._block_size = volume.store.part_segments * volume.segment_size
        self._chunks: list[bytes] = []
        self._chunked = 0
        self._parts = 0
        self._pending: list[Future] = []
        self._pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix=f"stage-{name[:20]}")
        self._slots = threading.BoundedSemaphore(parallelism * 2)
        # Parts are staged in order, so the digest of what was staged is the digest of the object. It is
        # computed on one thread of its own, in order (hashlib releases the GIL): 4 MiB take ~5 ms on this
        # box, which would otherwise hold up the app's writes.
        self._digest = hashlib.sha256()
        self._hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hash-{name[:20]}")
        self.header: bytes | None = None
        self.size = 0
        self.closed = False
        #: why this writer can no longer commit (a part that did not reach storage); None while healthy
        self.failed: str | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self.closed:
            raise ValueError(f"{self.name}: writer is closed")
        if self.failed:
            raise RemoteServiceError(self.volume.store.service, f"{self.name}: an earlier part failed ({self.failed})")
        self.size += len(data)
        chunks = self._encryptor.update_segments(data) if self._encryptor else [bytes(data)]
        for chunk in chunks:
            self._chunks.append(chunk)
            self._chunked += len(chunk)
        # CSE segments add up to a part exactly, so parts are joined without re-slicing. A full part is staged
        # only once more data follows it: the last part goes with the commit (S3: one PutObject if it is the
        # only one).
        while self._chunked > self._block_size:
            self._stage(self._take_part())

    def _take_part(self) -> bytes:
        """The first `_block_size` bytes of what is buffered (whole chunks joined; one sliced only when a part
        ends inside it, which CSE segments never do)."""
        taken, size = 0, 0
        while size < self._block_size:
            size += len(self._chunks[taken])
            taken += 1
        joined = b"".join(self._chunks[:taken])
        rest = self._chunks[taken:]
        if size > self._block_size:
            joined, spill = joined[:self._block_size], joined[self._block_size:]
            rest.insert(0, spill)
        self._chunks, self._chunked = rest, self._chunked - self._block_size
        return joined

    def _account(self, block: bytes) -> None:
        if self._parts == 0 and self._encryptor is not None and self.header is None:
            self.header = block[:fmt.HEADER_SIZE]
        self._hashing.submit(self._digest.update, block)

    def _stage(self, block: bytes) -> None:
        self._raise_failed()
        self._account(block)
        number = self._parts
        self._parts += 1
        self._slots.acquire()  # bounded memory: at most 2 × parallelism parts in flight

        def stage() -> None:
            try:
                self._upload.put_part(number, block)
            finally:
                self._slots.release()

        self._pending.append(self._pool.submit(stage))

    def _raise_failed(self) -> None:
        # A failed part stays failed: the writer can never commit an object with a hole in it.
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            exc = future.exception()
            if exc is not None:
                failure = as_ccr(exc)
                self.failed = str(failure)
                raise failure

    def commit(self, metadata: dict[str, str] | None = None) -> int:
        """Stage what is left and commit; returns the stored size. Idempotent failure: on error nothing
        is committed and the writer is aborted."""
        if self.closed:
            raise ValueError(f"{self.name}: writer is closed")
        try:
            if self.failed:
                raise RemoteServiceError(self.volume.store.service,
                                         f"{self.name}: an earlier part failed ({self.failed})")
            if self._encryptor is not None:
                self._chunks.append(self._encryptor.finish())
            last = b"".join(self._chunks)
            self._chunks, self._chunked = [], 0
            if last or not self._parts:
                self._account(last)
            for future in self._pending:
                exc = future.exception()
                if exc is not None:
                    failure = as_ccr(exc)
                    self.failed = str(failure)
                    raise failure
            self._pending.clear()
            self._upload.complete(self._parts, last, dict(metadata or {}))
            return self.stored_size
        except BaseException as exc:
            self.failed = self.failed or str(exc) or type(exc).__name__
            self._upload.abort()
            raise
        finally:
            self.closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._hashing.shutdown(wait=True)  # the digest is complete before entry() can be read

    def entry(self) -> Entry:
        """The committed object's manifest entry (stored size, sha256 of the stored bytes, CSE header)."""
        if not self.closed or self.failed:
            raise ValueError(f"{self.name}: not committed")
        return Entry(self.name, self.stored_size, self._digest.hexdigest(),
                     self.header.hex() if self.header is not None else None)

    @property
    def stored_size(self) -> int:
        if self._encryptor is not None:
            return fmt.ciphertext_size(self.size, self.volume.segment_size)
        return self.size

    def abort(self) -> None:
        self.failed = self.failed or "aborted"
        self.closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._hashing.shutdown(wait=True, cancel_futures=True)
        self._upload.abort()
