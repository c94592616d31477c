"""The clear-text FUSE view (pyfuse3 + trio) of one encrypted container.

Datasource (read-only): the tree is the container's blobs at mount time ('/' in names makes folders),
sizes are plaintext sizes. With a manifest (manifest.py) the tree is the manifest's objects only, and an
object whose size or CSE header is not the manifest's (another version: replaced or rolled back) is EIO
at open; refusals are logged and, with governance, audited once per object. A read fetches only the
segments it needs with one ranged GET, through a segment cache; sequential reading starts parallel
read-ahead of whole blocks of segments. Every byte handed to the kernel was authenticated first: a
segment that fails (tampered, truncated, moved, wrong key) is an EIO, logged with the object and
segment, never data. Any change → EROFS.

Datasink (write): create + sequential writes + close. A block or commit that does not reach storage makes
that fsync/close EIO and poisons the file: every later write, fsync and close of it is EIO too, so no
byte is acknowledged into a file that cannot be committed. Each commit records the object's manifest
entry (`written`); the mount signs the manifest of them when it stops. Segments are encrypted as they fill and staged as
blocks in the background; the object is committed (block list) on close or fsync, and only then exists
under its name. If the filesystem dies before that, storage holds only uncommitted blocks (discarded by
the service), never a partial object. Errnos for what is not supported: a write at any offset other
than the end → ESPIPE; append to or reopening an existing non-empty file without O_TRUNC, rename,
link, truncation to another size → ENOTSUP. Reading back is
allowed for committed files (same authenticated path as a datasource); a file still being written reads
as EBUSY. unlink deletes the object (or abandons an unfinished one). Writing on after a commit of the
same open file (one of several descriptors closed, or fsync) continues the file: the next commit
replaces the object with a new version (re-encrypted, never reusing a nonce).

Note: the kernel closes an application's files when it exits, crash included, and FUSE cannot tell that
close from a deliberate one, so a crashed app's file is committed with what it wrote (authentic, but
possibly short). Sinks therefore record the written length in the blob metadata `ccrsize` and apps that
need all-or-nothing output should write a final marker file.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import pyfuse3
import trio

from ..common import objectformat as fmt
from ..common.errors import CcrError
from .manifest import Entry, Manifest, ManifestRefused, is_reserved
from .store import ObjectInfo, ObjectReader, ObjectWriter, Volume

log = logging.getLogger("ccr.volumes.fs")

READAHEAD_BLOCKS = 4  # blocks (the store's read_segments each) fetched ahead of a sequential reader
FETCH_THREADS = 8


@dataclass
class Node:
    inode: int
    name: str
    parent: int
    is_dir: bool
    blob: str = ""
    stored_size: int = 0
    size: int = 0
    mtime_ns: int = 0
    children: dict[str, int] = field(default_factory=dict)
    writing: ObjectWriter | None = None
    committed: bool = True
    #: the manifest's entry for this object (datasources with a manifest)
    expected: Entry | None = None
    #: why the stored object is not the one the manifest names (every open is EIO)
    mismatch: str | None = None


@dataclass
class Handle:
    node: Node
    reader: ObjectReader | None = None
    writer: ObjectWriter | None = None
    next_offset: int = 0
    readahead_block: int = -1
    lock: trio.Lock = field(default_factory=trio.Lock)


class _Pending:
    """A segment being fetched: waiters wait on `done`, then find `data` or `error`."""

    __slots__ = ("done", "data", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None


class SegmentCache:
    """LRU of plaintext segments keyed by (inode, segment), bounded in bytes."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.used = 0
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def get(self, key: tuple[int, int]) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._items

    def put(self, key: tuple[int, int], data: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= len(old)
        self._items[key] = data
        self.used += len(data)
        while self.used > self.limit and self._items:
            _, evicted = self._items.popitem(last=False)
            self.used -= len(evicted)

    def drop_inode(self, inode: int) -> None:
        for key in [k for k in self._items if k[0] == inode]:
            self.used -= len(self._items.pop(key))


class VolumeFilesystem(pyfuse3.Operations):
    enable_writeback_cache = False
    supports_dot_lookup = False

    def __init__(self, volume: Volume, *, writable: bool, uid: int, gid: int,
                 cache_bytes: int = 64 * 1024 * 1024, readahead_blocks: int = READAHEAD_BLOCKS,
                 manifest: Manifest | None = None, audit: Callable[[dict], None] | None = None):
        super().__init__()
        self.volume = volume
        self.manifest = manifest
        #: records a refused object in the contract's audit log (governance), if the mount has one
        self.audit = audit
        self._audited: set[str] = set()
        #: a datasink's objects committed by this run, as its manifest will list them
        self.written: dict[str, Entry] = {}
        self.writable = writable
        self.uid, self.gid = uid, gid
        # Read-ahead must not evict what it fetched before the reader gets there.
        #: segments per read-ahead GET: the store's preferred range (4 MiB Blob, 8 MiB S3)
        self.block_segments = volume.store.read_segments
        window = readahead_blocks * self.block_segments * volume.segment_size
        self.cache = SegmentCache(max(cache_bytes, 2 * window))
        self.readahead_blocks = readahead_blocks
        self.nodes: dict[int, Node] = {pyfuse3.ROOT_INODE: Node(pyfuse3.ROOT_INODE, "", pyfuse3.ROOT_INODE, True,
                                                                mtime_ns=time.time_ns())}
        self._next_inode = pyfuse3.ROOT_INODE + 1
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._limiter = trio.CapacityLimiter(FETCH_THREADS)
        self._readers: dict[int, ObjectReader] = {}
        self.nursery: trio.Nursery | None = None
        self.errors = 0
        self._commits = 0
        self._no_commits = trio.Event()
        self._no_commits.set()

    # --- tree ------------------------------------------------------------------------------------

    def load_tree(self) -> int:
        """Build the tree from the container's blobs; returns the number of files. With a manifest, the tree
        is the manifest's objects only, and one that storage lacks fails the mount (ManifestRefused)."""
        count = 0
        listed = [info for info in self.volume.list_objects() if not is_reserved(info.name)]
        if self.manifest is not None:
            listed = self._bind_to_manifest(listed, self.manifest)
        for info in listed:
            parts = info.name.split("/")
            if any(p in ("", ".", "..") for p in parts):
                log.warning("skipping blob %r: its name is not a usable path", info.name)
                continue
            parent = self.nodes[pyfuse3.ROOT_INODE]
            for part in parts[:-1]:
                parent = self._child_dir(parent, part, info.last_modified)
                if parent is None:
                    break
            if parent is None or parts[-1] in parent.children:
                log.warning("skipping blob %r: a folder of the same name exists", info.name)
                continue
            node = self._add(parent, parts[-1], is_dir=False)
            node.blob, node.stored_size, node.size = info.name, info.stored_size, info.plaintext_size
            node.mtime_ns = int(info.last_modified * 1e9)
            if self.manifest is not None:
                node.expected = self.manifest.entries[info.name]
                if info.stored_size != node.expected.size:
                    node.mismatch = (f"{self.volume.location(info.name)}: {info.stored_size} bytes in storage, "
                                     f"the manifest names {node.expected.size} (replaced or rolled back)")
                    node.stored_size = node.expected.size
                    node.size = self._plaintext_size(node.expected.size)
            count += 1
        return count

    def _bind_to_manifest(self, listed: list[ObjectInfo], manifest: Manifest) -> list[ObjectInfo]:
        by_name = {info.name: info for info in listed}
        missing = sorted(set(manifest.entries) - set(by_name))
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ManifestRefused(f"{self.volume.location(missing[0])}: named by the manifest but missing from "
                                  f"storage (deleted){more}")
        for name in sorted(set(by_name) - set(manifest.entries)):
            log.warning("not showing %s: it is not in the manifest (added outside the dataset)",
                        self.volume.location(name))
        return [by_name[name] for name in sorted(manifest.entries)]

    def _plaintext_size(self, stored_size: int) -> int:
        try:
            return self.volume.plaintext_size(stored_size)
        except fmt.TamperedObject:
            return 0

    def _child_dir(self, parent: Node, name: str, mtime: float) -> Node | None:
        inode = parent.children.get(name)
        if inode is None:
            node = self._add(parent, name, is_dir=True)
            node.mtime_ns = int(mtime * 1e9)
            return node
        node = self.nodes[inode]
        if not node.is_dir:
            log.warning("blob %r is also a folder of other blobs: shown as a folder", node.blob)
            node.is_dir, node.blob, node.size = True, "", 0
        return node

    def _add(self, parent: Node, name: str, *, is_dir: bool) -> Node:
        node = Node(self._next_inode, name, parent.inode, is_dir, mtime_ns=time.time_ns())
        self._next_inode += 1
        self.nodes[node.inode] = node
        parent.children[name] = node.inode
        return node

    def _node(self, inode: int) -> Node:
        node = self.nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _path_of(self, parent: Node, name: str) -> str:
        parts = [name]
        while parent.inode != pyfuse3.ROOT_INODE:
            parts.append(parent.name)
            parent = self.nodes[parent.parent]
        return "/".join(reversed(parts))

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = node.inode
        if node.is_dir:
            attrs.st_mode = stat.S_IFDIR | (0o755 if self.writable else 0o555)
            attrs.st_nlink = 2
        else:
            attrs.st_mode = stat.S_IFREG | (0o644 if self.writable else 0o444)
            attrs.st_nlink = 1
        attrs.st_size = node.size
        attrs.st_uid, attrs.st_gid = self.uid, self.gid
        attrs.st_blksize = self.volume.segment_size
        attrs.st_blocks = -(-node.size // 512)
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = node.mtime_ns
        # A datasource never changes while mounted: let the kernel cache names and attributes.
        attrs.entry_timeout = attrs.attr_timeout = 1.0 if self.writable else 300.0
        return attrs

    # --- metadata operations ---------------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx=None):
        parent = self._node(parent_inode)
        text = os.fsdecode(name)
        if text == "..":
            return self._attrs(self.nodes[parent.parent])
        if text == ".":
            return self._attrs(parent)
        inode = parent.children.get(text)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(self.nodes[inode])

    async def getattr(self, inode, ctx=None):
        return self._attrs(self._node(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        if not self.writable:
            raise pyfuse3.FUSEError(errno.EROFS)
        if fields.update_size and attr.st_size != node.size:
            # ftruncate(fd, 0) right after create is harmless; any other size would rewrite the object.
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        return self._attrs(node)

    async def opendir(self, inode, ctx):
        if not self._node(inode).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        node = self._node(fh)
        entries = sorted(node.children.items())
        for index in range(start_id, len(entries)):
            name, inode = entries[index]
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attrs(self.nodes[inode]), index + 1):
                break

    async def releasedir(self, fh):
        return None

    async def statfs(self, ctx):
        stats = pyfuse3.StatvfsData()
        stats.f_bsize = stats.f_frsize = self.volume.segment_size
        used = sum(-(-n.size // self.volume.segment_size) for n in self.nodes.values() if not n.is_dir)
        free = 2**40 // self.volume.segment_size if self.writable else 0  # blob storage has no fixed size
        stats.f_blocks = used + free
        stats.f_bfree = stats.f_bavail = free
        stats.f_files = len(self.nodes)
        stats.f_ffree = stats.f_favail = 2**32 if self.writable else 0
        stats.f_namemax = 1024
        return stats

    # --- reading ---------------------------------------------------------------------------------

    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        accmode = flags & os.O_ACCMODE
        if accmode != os.O_RDONLY:
            return await self._open_for_write(node, flags)
        if node.writing is not None:
            raise pyfuse3.FUSEError(errno.EBUSY)
        if node.mismatch is not None:
            self._fail(ManifestRefused(node.mismatch))
        handle = Handle(node, reader=await self._reader(node))
        fh = self._new_handle(handle)
        return pyfuse3.FileInfo(fh=fh, keep_cache=not self.writable)

    async def _reader(self, node: Node) -> ObjectReader:
        reader = self._readers.get(node.inode)
        if reader is None:
            header = node.expected.header_bytes if node.expected is not None else None
            try:
                reader = self.volume.reader(node.blob, node.stored_size, expected_header=header)
                if header is not None:
                    # One small GET at the first open: a replaced object fails here, not at a later read.
                    await trio.to_thread.run_sync(reader.verify_header, limiter=self._limiter)
            except CcrError as exc:
                self._fail(exc)
            self._readers[node.inode] = reader
        return reader

    def _new_handle(self, handle: Handle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _fail(self, exc: BaseException) -> None:
        self.errors += 1
        log.error("EIO: %s", exc)
        if self.audit is not None and isinstance(exc, (fmt.TamperedObject, ManifestRefused)):
            reason = str(exc)
            # Once per object (its messages start with its location): a tampered file read in a loop, or
            # each of its segments, must not flood the audit log. In the background: the app gets its EIO
            # now, whatever CGS answers.
            where = reason.split(": ", 1)[0]
            if where not in self._audited and self.nursery is not None:
                self._audited.add(where)
                self.nursery.start_soon(self._audit_refusal, reason)
        raise pyfuse3.FUSEError(errno.EIO)

    async def _audit_refusal(self, reason: str) -> None:
        assert self.audit is not None
        try:
            await trio.to_thread.run_sync(self.audit, {"event": "object-refused", "reason": reason[:500]})
        except Exception as exc:  # noqa: BLE001 - the refusal stands and is logged either way
            log.warning("refusal not audited: %s", exc)

    async def read(self, fh, off, size):
        handle = self._handles.get(fh)
        if handle is None or handle.reader is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        reader, inode = handle.reader, handle.node.inode
        segments = reader.layout.segments_for(off, size)
        if not segments:
            return b""
        # Sequential: continuing where the last read ended, or inside the read-ahead window (the kernel's
        # own read-ahead sends several requests at once, not always in order).
        block = segments[0] // self.block_segments
        sequential = off == handle.next_offset or (
            handle.readahead_block >= 0 and 0 <= block - handle.readahead_block < self.readahead_blocks)
        log.debug("read inode %d off %d size %d %s", inode, off, size, "seq" if sequential else "random")
        handle.next_offset = off + size
        last_needed = segments[-1]
        if sequential and block != handle.readahead_block:
            # Whole, aligned blocks ahead of the reader: the window advances a block (one GET) at a time,
            # checked once per block entered rather than on every 128 KiB read.
            count = reader.layout.segment_count
            first_block = handle.readahead_block = block
            for ahead in range(first_block, first_block + self.readahead_blocks):
                start = ahead * self.block_segments
                if start >= count:
                    break
                self._schedule(inode, reader, start, min(start + self.block_segments, count) - 1,
                               self.block_segments)
        fetched: dict[int, bytes] = {}
        if not sequential:
            missing = [i for i in segments if (inode, i) not in self.cache and (inode, i) not in self._pending]
            if missing and missing == list(range(missing[0], missing[-1] + 1)):
                # A random read waits for its own GET anyway: run it from this request, one task hop less.
                pendings = self._register(inode, missing[0], missing[-1])
                await self._fetch(inode, reader, missing[0], missing[-1], pendings)
                for index, pending in pendings.items():
                    if pending.error is not None:
                        self._fail(pending.error)
                    assert pending.data is not None
                    fetched[index] = pending.data
            else:
                self._schedule(inode, reader, segments[0], last_needed, len(segments))
        parts = []
        for index in segments:
            data = fetched.get(index)
            if data is None:
                data = self.cache.get((inode, index))
            if data is None:
                data = await self._wait(inode, reader, index)
            start, _ = reader.layout.plaintext_range(index)
            lo = max(off - start, 0)
            hi = min(off + size - start, len(data))
            parts.append(data[lo:hi])
        return b"".join(parts)

    def _schedule(self, inode: int, reader: ObjectReader, first: int, last: int, max_run: int) -> None:
        """Start fetches for the segments in first..last that are neither cached nor being fetched, in
        runs of at most `max_run` consecutive segments (one ranged GET each)."""
        run: list[int] = []
        for index in range(first, last + 1):
            key = (inode, index)
            if key not in self.cache and key not in self._pending:
                run.append(index)
                if len(run) < max_run:
                    continue
            if run:
                self._start_fetch(inode, reader, run[0], run[-1])
                run = []
        if run:
            self._start_fetch(inode, reader, run[0], run[-1])

    def _register(self, inode: int, first: int, last: int) -> dict[int, _Pending]:
        pendings = {}
        for index in range(first, last + 1):
            pendings[index] = self._pending[(inode, index)] = _Pending()
        return pendings

    def _start_fetch(self, inode: int, reader: ObjectReader, first: int, last: int) -> None:
        pendings = self._register(inode, first, last)
        assert self.nursery is not None
        self.nursery.start_soon(self._fetch, inode, reader, first, last, pendings)

    async def _fetch(self, inode: int, reader: ObjectReader, first: int, last: int,
                     pendings: dict[int, _Pending]) -> None:
        log.debug("fetch inode %d segments %d..%d", inode, first, last)
        try:
            plaintexts = await trio.to_thread.run_sync(reader.fetch, first, last, limiter=self._limiter)
            for index, data in zip(range(first, last + 1), plaintexts, strict=True):
                self.cache.put((inode, index), data)
                pendings[index].data = data
        except Exception as exc:  # any failure is this read's EIO, never the filesystem's end
            for pending in pendings.values():
                pending.error = exc
        finally:
            for index, pending in pendings.items():
                self._pending.pop((inode, index), None)
                pending.done.set()

    async def _wait(self, inode: int, reader: ObjectReader, index: int) -> bytes:
        key = (inode, index)
        pending = self._pending.get(key)
        if pending is None:
            data = self.cache.get(key)
            if data is not None:
                return data
            self._start_fetch(inode, reader, index, index)
            pending = self._pending[key]
        await pending.done.wait()
        if pending.error is not None:
            self._fail(pending.error)
        assert pending.data is not None
        return pending.data

    async def release(self, fh):
        handle = self._handles.pop(fh, None)
        if handle is not None and handle.writer is not None and not handle.writer.closed:
            await self._commit(handle)

    # --- writing ---------------------------------------------------------------------------------

    def _require_writable(self) -> None:
        if not self.writable:
            raise pyfuse3.FUSEError(errno.EROFS)

    def _refuse_reserved(self, parent: Node, text: str) -> None:
        # The container's reserved folder holds the room's signed manifest: the app cannot write there.
        if is_reserved(self._path_of(parent, text) + "/"):
            raise pyfuse3.FUSEError(errno.EPERM)

    async def create(self, parent_inode, name, mode, flags, ctx):
        self._require_writable()
        parent = self._node(parent_inode)
        text = os.fsdecode(name)
        self._refuse_reserved(parent, text)
        if not stat.S_ISREG(mode) and mode & stat.S_IFMT:
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        existing = parent.children.get(text)
        if existing is not None:
            node = self.nodes[existing]
            if node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
        else:
            node = self._add(parent, text, is_dir=False)
            node.blob = self._path_of(parent, text)
            node.committed = False
        info = await self._open_for_write(node, flags | os.O_TRUNC)
        return info, self._attrs(node)

    async def _open_for_write(self, node: Node, flags: int) -> pyfuse3.FileInfo:
        self._require_writable()
        if flags & os.O_APPEND or (not flags & os.O_TRUNC and node.size > 0):
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        if node.writing is not None:
            raise pyfuse3.FUSEError(errno.EBUSY)
        writer = self.volume.writer(node.blob)
        node.writing, node.size, node.mtime_ns = writer, 0, time.time_ns()
        self._readers.pop(node.inode, None)
        self.cache.drop_inode(node.inode)
        fh = self._new_handle(Handle(node, writer=writer))
        return pyfuse3.FileInfo(fh=fh, direct_io=True)

    async def write(self, fh, off, buf):
        handle = self._handles.get(fh)
        if handle is None or handle.writer is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        async with handle.lock:
            writer = handle.writer
            if writer.failed:
                # Bytes after a lost block (or a failed commit) would be acknowledged into a file that can
                # never be committed: every later write on this file is EIO too.
                self._fail(CcrError(f"{handle.node.blob}: not written to storage: {writer.failed}"))
            if writer.closed and off == writer.size:
                writer = handle.writer = await self._reopen(handle)
            if off != writer.size:
                log.warning("%s: write at offset %d, but the file ends at %d: only sequential writes are "
                            "supported (ESPIPE)", handle.node.blob, off, writer.size)
                raise pyfuse3.FUSEError(errno.ESPIPE)
            try:
                await trio.to_thread.run_sync(writer.write, buf)
            except Exception as exc:  # a failed stage is this file's EIO
                self._fail(exc)
            handle.node.size = writer.size
            handle.node.mtime_ns = time.time_ns()
        return len(buf)

    async def _reopen(self, handle: Handle) -> ObjectWriter:
        """More data after a commit on the same open file (a close of one of several descriptors, as
        `sh -c 'cmd > file'` does, or an fsync): write a new version holding the committed plaintext
        followed by what comes next. It is re-encrypted under a fresh salt and nonce prefix, so no
        nonce is ever used twice, and the committed version stays in place until the next commit."""
        node = handle.node
        old = handle.writer
        assert old is not None
        writer = self.volume.writer(node.blob)

        def copy_committed() -> None:
            if old.size:
                for plaintext in self.volume.reader(node.blob, node.stored_size).read_all():
                    writer.write(plaintext)

        try:
            await trio.to_thread.run_sync(copy_committed)
        except CcrError as exc:
            writer.abort()
            self._fail(exc)
        node.writing = writer
        self._readers.pop(node.inode, None)
        self.cache.drop_inode(node.inode)
        return writer

    async def flush(self, fh):
        handle = self._handles.get(fh)
        if handle is None or handle.writer is None:
            return
        if handle.writer.failed:
            # Every close and fsync of a file whose bytes did not all reach storage says so, not only the first.
            self._fail(CcrError(f"{handle.node.blob}: not written to storage: {handle.writer.failed}"))
        if not handle.writer.closed:
            await self._commit(handle)

    async def fsync(self, fh, datasync):
        await self.flush(fh)

    async def _commit(self, handle: Handle) -> None:
        async with handle.lock:
            writer = handle.writer
            assert writer is not None
            if writer.closed:
                return
            node = handle.node
            if not self._commits:
                self._no_commits = trio.Event()
            self._commits += 1
            try:
                stored = await trio.to_thread.run_sync(
                    lambda: writer.commit(metadata={"ccrsize": str(writer.size)}))
            except Exception as exc:  # a failed commit is this close's EIO
                node.writing = None
                # What the tree shows is what storage holds: the last committed version, or nothing.
                node.size = self._plaintext_size(node.stored_size) if node.committed else 0
                self._fail(exc)
            finally:
                self._commits -= 1
                if not self._commits:
                    self._no_commits.set()
            node.writing, node.stored_size, node.committed = None, stored, True
            self.written[node.blob] = writer.entry()
            log.info("committed %s (%d bytes)", node.blob, node.size)

    async def unlink(self, parent_inode, name, ctx):
        self._require_writable()
        parent = self._node(parent_inode)
        text = os.fsdecode(name)
        inode = parent.children.get(text)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node = self.nodes[inode]
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.writing is not None:
            node.writing.abort()
            node.writing = None
        if node.committed:
            try:
                await trio.to_thread.run_sync(self.volume.delete, node.blob)
            except CcrError as exc:
                self._fail(exc)
        self.written.pop(node.blob, None)
        del parent.children[text]
        self._readers.pop(inode, None)
        self.cache.drop_inode(inode)

    async def mkdir(self, parent_inode, name, mode, ctx):
        self._require_writable()
        parent = self._node(parent_inode)
        text = os.fsdecode(name)
        self._refuse_reserved(parent, text)
        if text in parent.children:
            raise pyfuse3.FUSEError(errno.EEXIST)
        return self._attrs(self._add(parent, text, is_dir=True))

    async def rmdir(self, parent_inode, name, ctx):
        self._require_writable()
        parent = self._node(parent_inode)
        inode = parent.children.get(os.fsdecode(name))
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node = self.nodes[inode]
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if node.children:
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        del parent.children[node.name]

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        self._require_writable()
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        self._require_writable()
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def symlink(self, parent_inode, name, target, ctx):
        self._require_writable()
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        self._require_writable()
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    # --- shutdown --------------------------------------------------------------------------------

    def open_writers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.writing is not None]

    async def drain(self) -> None:
        """Wait for commits in progress (closes that already happened) to finish."""
        await self._no_commits.wait()


KERNEL_READAHEAD_KB = 4096
MNT_DETACH = 2  # umount2(2): detach now, release when no longer busy


def _widen_kernel_readahead(mountpoint: str) -> None:
    """Let the kernel read ahead one block (4 MiB) instead of 128 KiB: FUSE read requests grow up to
    1 MiB, so a sequential reader costs 8× fewer requests (measured: a third less CPU in this process).
    The device number comes from mountinfo, not from a stat of the mount point: a stat goes through this
    very filesystem, and one left waiting when a stop came first kept the process from ever exiting.
    Best effort: /sys may be read-only in a container."""
    device = _mount_device(mountpoint)
    if device is None:
        log.info("kernel read-ahead left at its default: %s is not in mountinfo", mountpoint)
        return
    try:
        with open(f"/sys/class/bdi/{device}/read_ahead_kb", "w") as setting:
            setting.write(str(KERNEL_READAHEAD_KB))
    except OSError as exc:
        log.info("kernel read-ahead left at its default: %s", exc)


async def run(fs: VolumeFilesystem, mountpoint: str, *, fsname: str, on_mounted=None) -> None:
    """Mount, serve until SIGTERM/SIGINT, then unmount. Files still open for writing at that point are
    not committed (their staged blocks are abandoned): a stop is not a close."""

    options = {"default_permissions", "allow_other", f"fsname={fsname}", "subtype=ccr"}
    if not fs.writable:
        options.add("ro")
    pyfuse3.init(fs, mountpoint, options)
    try:
        async with trio.open_nursery() as nursery:
            fs.nursery = nursery

            async def on_signal(task_status=trio.TASK_STATUS_IGNORED) -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    task_status.started()
                    async for signum in signals:
                        log.info("signal %d: finishing commits, then unmounting %s", signum, mountpoint)
                        await fs.drain()
                        for node in fs.open_writers():
                            log.warning("not committing %s: still open for writing at shutdown", node.blob)
                            assert node.writing is not None
                            node.writing.abort()
                        pyfuse3.terminate()
                        return

            # The receiver is in place before anyone hears "mounted": a SIGTERM sent the moment the status
            # file appears would otherwise meet the default handler and leave the mount behind.
            await nursery.start(on_signal)
            if not fs.writable:
                _widen_kernel_readahead(mountpoint)
            if on_mounted is not None:
                on_mounted()
            await pyfuse3.main()
            nursery.cancel_scope.cancel()
    finally:
        pyfuse3.close(unmount=True)
        _detach_if_still_mounted(mountpoint)


def _mount_device(mountpoint: str) -> str | None:
    """The `major:minor` of the filesystem mounted at `mountpoint` in this process's mount namespace (the
    topmost one), from mountinfo's third and fifth fields (the kernel escapes spaces and the like in octal);
    None if nothing is mounted there. Only the parent's path is resolved: resolving the mount point itself
    would stat the filesystem mounted there."""
    parent, name = os.path.split(os.path.normpath(mountpoint))
    wanted = os.path.join(os.path.realpath(parent), name)
    found = None
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 4 and fields[4].encode().decode("unicode_escape") == wanted:
                found = fields[2]
    return found


def _still_mounted(mountpoint: str) -> bool:
    """Whether `mountpoint` is a mount point in this process's mount namespace."""
    return _mount_device(mountpoint) is not None


def _detach_if_still_mounted(mountpoint: str) -> None:
    """A stopped volume leaves no mount behind. libfuse unmounts as the session closes, but once in the suite,
    under load, a clean stop left the mount in place: detach it then (MNT_DETACH, as libfuse itself does)."""
    if not _still_mounted(mountpoint):
        return
    log.warning("%s still mounted after the FUSE session closed: detaching it", mountpoint)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(mountpoint), MNT_DETACH) != 0:
        log.error("cannot detach %s: %s", mountpoint, os.strerror(ctypes.get_errno()))
