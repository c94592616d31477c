"""Objects of one volume in blob storage, in the volume's encryption mode, through azure-storage-blob.

`ObjectReader` fetches segments with ranged GETs (one GET may cover many consecutive segments) and
returns authenticated plaintext; `ObjectWriter` encrypts as data arrives, stages full blocks in parallel
and commits the block list only in `commit()`: until then storage holds no object under the name (or
still the previous one), so an interrupted upload never leaves something that looks complete.

Modes: CSE objects are the Tink format of `format.py`. CPK and SSE objects are the plain bytes (storage
encrypts them, with our DEK sent along each request for CPK); they use the same segment arithmetic
without a header or tags, so the filesystem code is the same for every mode.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContainerClient, CustomerProvidedEncryptionKey

from ..common import objectformat as fmt
from ..common.errors import NotFound, RemoteServiceError
from ..spec import EncryptionMode
from .manifest import Entry

BLOCK_SEGMENTS = 64  # 4 MiB blocks: 50,000 blocks per blob allow 200 GiB objects
FORMAT_METADATA = "ccrformat"


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    stored_size: int
    plaintext_size: int
    last_modified: float


class Volume:
    """One container in one mode, with its DEK (None only for SSE)."""

    def __init__(self, container: ContainerClient, mode: EncryptionMode, key: fmt.DataKey | None):
        if (key is None) != (mode is EncryptionMode.SSE):
            raise ValueError(f"mode {mode.value} {'needs' if key is None else 'takes no'} data key")
        self.container = container
        self.mode = mode
        self.key = key
        self.account = container.account_name or ""
        self.segment_size = key.segment_size if key else fmt.SEGMENT_SIZE
        self.cpk = _cpk(key) if mode is EncryptionMode.CPK else None

    def location(self, name: str) -> fmt.ObjectLocation:
        return fmt.ObjectLocation(self.account, self.container.container_name, name)

    def plaintext_size(self, stored_size: int) -> int:
        if self.mode is EncryptionMode.CSE:
            return fmt.plaintext_size(stored_size, self.segment_size)
        return stored_size

    def list_objects(self, prefix: str | None = None) -> Iterator[ObjectInfo]:
        """Committed objects; a CSE blob whose size no valid object has is listed with size 0 (its reads
        fail) rather than hidden, so tampering is visible."""
        try:
            for blob in self.container.list_blobs(name_starts_with=prefix):
                try:
                    size = self.plaintext_size(blob.size)
                except fmt.TamperedObject:
                    size = 0
                yield ObjectInfo(blob.name, blob.size, size, blob.last_modified.timestamp())
        except ResourceNotFoundError:
            raise NotFound(f"container {self.container.container_name} does not exist") from None
        except AzureError as exc:
            raise _as_ccr(exc) from None

    def reader(self, name: str, stored_size: int, *, expected_header: bytes | None = None) -> ObjectReader:
        return ObjectReader(self, name, stored_size, expected_header=expected_header)

    def writer(self, name: str, *, parallelism: int = 4) -> ObjectWriter:
        return ObjectWriter(self, name, parallelism=parallelism)

    def delete(self, name: str) -> None:
        try:
            self.container.delete_blob(name)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _as_ccr(exc) from None

    def get_small(self, name: str, limit: int) -> bytes | None:
        """A whole small blob (a manifest), None if it does not exist; refused past `limit` bytes."""
        try:
            blob = self.container.get_blob_client(name)
            size = blob.get_blob_properties(cpk=self.cpk).size
            if size > limit:
                raise RemoteServiceError("blob storage", f"{name} is {size} bytes, over the {limit} expected")
            # The blob can change after its properties were read: the limit holds for what actually comes.
            data = bytearray()
            for chunk in blob.download_blob(cpk=self.cpk, max_concurrency=1).chunks():
                data += chunk
                if len(data) > limit:
                    raise RemoteServiceError("blob storage", f"{name} grew past the {limit} bytes expected")
            return bytes(data)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _as_ccr(exc) from None

    def put_small(self, name: str, data: bytes) -> None:
        """Store a small blob in one request (a manifest: plain JSON, its integrity is its pin or signature)."""
        try:
            self.container.upload_blob(name, data, overwrite=True, cpk=self.cpk)
        except AzureError as exc:
            raise _as_ccr(exc) from None

    def get_range(self, name: str, start: int, end: int) -> bytes:
        try:
            stream = self.container.get_blob_client(name).download_blob(
                offset=start, length=end - start, cpk=self.cpk, max_concurrency=1)
            return stream.readall()
        except ResourceNotFoundError:
            raise NotFound(f"object {name} does not exist") from None
        except AzureError as exc:
            raise _as_ccr(exc) from None


def _cpk(key: fmt.DataKey) -> CustomerProvidedEncryptionKey:
    material = key.export_material()
    return CustomerProvidedEncryptionKey(base64.b64encode(material).decode(),
                                         base64.b64encode(hashlib.sha256(material).digest()).decode())


def _storage_message(exc: AzureError) -> str:
    return (exc.message or str(exc) or type(exc).__name__).splitlines()[0]


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
    """Sequential writer: `write` encrypts and stages blocks in the background as they fill, `commit`
    stages the rest and commits the block list, `abort` drops everything (nothing committed)."""

    def __init__(self, volume: Volume, name: str, *, parallelism: int = 4):
        self.volume = volume
        self.name = name
        self.blob = volume.container.get_blob_client(name)
        self._encryptor = (fmt.Encryptor(volume.key, volume.location(name))
                           if volume.mode is EncryptionMode.CSE and volume.key else None)
        self._block_size = BLOCK_SEGMENTS * volume.segment_size
        self._chunks: list[bytes] = []
        self._chunked = 0
        self._upload_id = os.urandom(8).hex()
        self._blocks: list[str] = []
        self._pending: list[Future] = []
        self._pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix=f"stage-{name[:20]}")
        self._slots = threading.BoundedSemaphore(parallelism * 2)
        # Blocks are staged in order, so the digest of what was staged is the digest of the object. It is
        # computed on one thread of its own, in order (hashlib releases the GIL): 4 MiB take ~5 ms on this
        # box, which would otherwise hold up the app's writes.
        self._digest = hashlib.sha256()
        self._hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hash-{name[:20]}")
        self.header: bytes | None = None
        self.size = 0
        self.closed = False
        #: why this writer can no longer commit (a block that did not reach storage); None while healthy
        self.failed: str | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self.closed:
            raise ValueError(f"{self.name}: writer is closed")
        if self.failed:
            raise RemoteServiceError("blob storage", f"{self.name}: an earlier block failed ({self.failed})")
        self.size += len(data)
        chunks = self._encryptor.update_segments(data) if self._encryptor else [bytes(data)]
        for chunk in chunks:
            self._chunks.append(chunk)
            self._chunked += len(chunk)
        # CSE segments add up to a block exactly (64 of them), so blocks are joined without re-slicing.
        while self._chunked >= self._block_size:
            joined = b"".join(self._chunks)
            block, rest = joined[:self._block_size], joined[self._block_size:]
            self._chunks, self._chunked = ([rest] if rest else []), len(rest)
            self._stage(block)

    def _stage(self, block: bytes) -> None:
        self._raise_failed()
        if not self._blocks and self._encryptor is not None:
            self.header = block[:fmt.HEADER_SIZE]
        self._hashing.submit(self._digest.update, block)
        block_id = base64.b64encode(f"{self._upload_id}-{len(self._blocks):08d}".encode()).decode()
        self._blocks.append(block_id)
        self._slots.acquire()  # bounded memory: at most 2 × parallelism blocks in flight

        def stage() -> None:
            try:
                self.blob.stage_block(block_id, block, length=len(block), cpk=self.volume.cpk)
            finally:
                self._slots.release()

        self._pending.append(self._pool.submit(stage))

    def _raise_failed(self) -> None:
        # A failed block stays failed: the writer can never commit a block list with a hole in it.
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            exc = future.exception()
            if exc is not None:
                failure = _as_ccr(exc)
                self.failed = str(failure)
                raise failure

    def commit(self, metadata: dict[str, str] | None = None) -> int:
        """Stage what is left and commit; returns the stored size. Idempotent failure: on error nothing
        is committed and the writer is aborted."""
        if self.closed:
            raise ValueError(f"{self.name}: writer is closed")
        try:
            if self.failed:
                raise RemoteServiceError("blob storage", f"{self.name}: an earlier block failed ({self.failed})")
            if self._encryptor is not None:
                self._chunks.append(self._encryptor.finish())
            if self._chunks or not self._blocks:
                self._stage(b"".join(self._chunks))
                self._chunks, self._chunked = [], 0
            for future in self._pending:
                exc = future.exception()
                if exc is not None:
                    failure = _as_ccr(exc)
                    self.failed = str(failure)
                    raise failure
            self._pending.clear()
            meta = dict(metadata or {})
            if self.volume.mode is EncryptionMode.CSE:
                meta[FORMAT_METADATA] = f"{fmt.FORMAT_NAME};segment={self.volume.segment_size}"
            try:
                self.blob.commit_block_list([BlobBlock(block_id=b) for b in self._blocks], metadata=meta,
                                            cpk=self.volume.cpk)
            except AzureError as exc:
                raise _as_ccr(exc) from None
            return self.stored_size
        except BaseException as exc:
            self.failed = self.failed or str(exc) or type(exc).__name__
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


def _as_ccr(exc: BaseException) -> Exception:
    """Storage failures (HTTP errors, unreachable service) as RemoteServiceError."""
    if isinstance(exc, AzureError):
        return RemoteServiceError("blob storage", _storage_message(exc), status=getattr(exc, "status_code", None))
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
