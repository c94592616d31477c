"""Image layers -> the dm-verity root hashes a CCE policy lists, computed locally.

How (the same algorithm `az confcom acipolicygen` runs through hcsshim's `dmverity-vhd`):
1. `podman image save --format oci-dir` writes the image as an OCI layout; each layer is a tar blob
   (gzip-compressed or not) listed in the manifest, bottom layer first;
2. each layer tar becomes a compact ext4 image (`sidecars.renderings.ext4`, hcsshim's tar2ext4 layout);
3. the root hash is hcsshim's `dmverity.MerkleTree` + `RootHash` over that image: SHA-256, 4 KiB
   blocks, a 32-byte all-zero salt hashed in front of every block; each level is the concatenation of
   the hashes of the level below, zero-padded to whole blocks (a level that already fills whole blocks
   still gets one extra zero block, as the Go code does); levels are built until one block remains;
   root = SHA-256(salt || that block). For data that is not a multiple of 128 blocks this equals
   `veritysetup format --no-superblock --salt 00..00` (format version 1).

Reading layers: `podman image save` recompresses every layer (about 20 s for a 370 MB image), so when
podman keeps its images in the overlay driver's storage the layer tar is reassembled from there
instead, exactly as containers/storage does it: the `tar-split` metadata holds every tar header and
padding byte, the layer's `diff` directory holds the file contents. The reassembled stream's SHA-256
must equal the layer's diff_id (the digest the image config names), so the bytes hashed are the
layer's, or the command fails. Otherwise (another storage driver, rootless storage elsewhere) the
image is exported with `podman image save --uncompressed`.

Hashing a layer takes about as long as reading it, so results are cached per layer (keyed by the
layer's uncompressed digest, the `diff_id`) under the cache directory; the cache is only an index of
pure functions of the layer bytes, so a stale entry cannot exist.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from ..common.errors import ConfigError
from .ext4 import tar_to_ext4

BLOCK = 4096
SALT = bytes(32)
#: ext4 images up to this size are built in memory (no disk round trip); larger ones spill to a file.
IN_MEMORY_IMAGE_MAX = 2 << 30


_SALTED = hashlib.sha256(SALT)


def _level_hashes(read) -> bytes:
    """SHA-256(salt || block) of every whole block `read(n)` returns, concatenated (a trailing partial
    block is not hashed: hcsshim refuses such input and ext4 images never have one)."""
    out = bytearray()
    salted = _SALTED.copy
    carry = b""
    while True:
        chunk = read(1 << 22)
        if not chunk:
            return bytes(out)
        view = memoryview(carry + chunk if carry else chunk)
        whole = len(view) - len(view) % BLOCK
        for offset in range(0, whole, BLOCK):
            h = salted()
            h.update(view[offset:offset + BLOCK])
            out += h.digest()
        carry = bytes(view[whole:])


def merkle_root_hash(image: BinaryIO) -> str:
    """hcsshim's dm-verity root hash of `image` (read from the current position to the end; its size
    is a whole number of blocks, as an ext4 image's is)."""
    level = _level_hashes(image.read)
    while True:
        level += bytes(BLOCK - len(level) % BLOCK)
        if len(level) == BLOCK:
            root = _SALTED.copy()
            root.update(level)
            return root.hexdigest()
        level = _level_hashes(io.BytesIO(level).read)


def layer_root_hash(layer_tar: BinaryIO, workdir: Path | None = None) -> str:
    """dm-verity root hash of one uncompressed layer tar (read sequentially)."""
    with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_IMAGE_MAX, dir=workdir) as image:
        tar_to_ext4(layer_tar, image)
        image.seek(0)
        return merkle_root_hash(image)


@dataclass(frozen=True)
class ImageInfo:
    """What a CCE policy entry needs from an image besides the container's own settings."""

    reference: str
    digest: str  # manifest digest, sha256:...
    layers: tuple[str, ...]  # dm-verity root hashes, bottom layer first
    env: tuple[str, ...] = ()  # NAME=VALUE from the image config (PATH, ...)
    working_dir: str = ""
    user: str = ""

    def to_json(self) -> dict:
        return {"digest": self.digest, "layers": list(self.layers), "env": list(self.env),
                "working_dir": self.working_dir, "user": self.user}

    @classmethod
    def from_json(cls, reference: str, data: Mapping) -> ImageInfo:
        try:
            return cls(reference=reference, digest=data["digest"], layers=tuple(data["layers"]),
                       env=tuple(data.get("env", ())), working_dir=data.get("working_dir", ""),
                       user=data.get("user", ""))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"layer lock entry for {reference}: missing or malformed {exc}") from None


class ImageResolver(Protocol):
    def resolve(self, reference: str) -> ImageInfo: ...


@dataclass
class LockedImages:
    """Image facts from a lock file (`ccr spec render layers` writes one): for building policies on a
    machine that does not hold the images. JSON: {reference: {digest, layers, env, working_dir, user}}."""

    images: dict[str, ImageInfo]

    @classmethod
    def load(cls, path: str | Path) -> LockedImages:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read layer lock {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"layer lock {path} is not JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"layer lock {path}: expected an object of image references")
        return cls({ref: ImageInfo.from_json(ref, entry) for ref, entry in data.items()})

    def resolve(self, reference: str) -> ImageInfo:
        if reference not in self.images:
            raise ConfigError(f"image {reference} is not in the layer lock; "
                              "run `ccr spec render layers SPEC -o FILE` where the images are built")
        return self.images[reference]

    def dump(self) -> str:
        return json.dumps({ref: info.to_json() for ref, info in sorted(self.images.items())},
                          indent=2, sort_keys=True) + "\n"


@dataclass
class PodmanImages:
    """Images in local podman storage. Layer hashes are cached in `cache_dir` by diff_id."""

    cache_dir: Path
    podman: str = "podman"
    #: called with one line per step of long work (layer hashing), e.g. to print progress
    progress: Callable[[str], None] | None = None
    _memo: dict[str, ImageInfo] = field(default_factory=dict)
    _found: dict[str, _OverlayStorage | None] = field(default_factory=dict)
    _inspected: dict[str, dict] = field(default_factory=dict)

    def _podman(self, *args: str) -> str:
        try:
            done = subprocess.run([self.podman, *args], capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise ConfigError("podman is not installed; pass --layers FILE with precomputed layer hashes") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise ConfigError(f"podman {args[0]} {args[1]}: {last}")
        return done.stdout

    def _inspect(self, reference: str) -> dict:
        if reference in self._inspected:
            return self._inspected[reference]
        try:
            self._inspected[reference] = json.loads(self._podman("image", "inspect", reference))[0]
            return self._inspected[reference]
        except ConfigError as exc:
            raise ConfigError(f"image {reference} is not in local podman storage (build it first, or pass "
                              f"--layers FILE): {exc}") from None

    def prefetch(self, references: list[str]) -> None:
        """Hash the uncached layers of these images, one process per core: a group's images are
        hashed in about the time of its biggest layer."""
        missing: list[str] = []
        for reference in dict.fromkeys(references):
            for diff_id in (self._inspect(reference).get("RootFS") or {}).get("Layers") or []:
                if self._cached(diff_id) is None and diff_id not in missing:
                    missing.append(diff_id)
        storage = self._storage() if len(missing) > 1 else None
        jobs = [(d, storage.layers[d]) for d in missing if storage is not None and d in storage.layers]
        if len(jobs) < 2:
            return
        started = time.monotonic()
        if self.progress:
            self.progress(f"hashing {len(jobs)} image layers (tar -> ext4 -> dm-verity); cached afterwards")
        # spawn, not fork: the caller may hold threads (an embedded OPA, an HTTP server).
        context = multiprocessing.get_context("spawn")
        workers = min(len(jobs), os.cpu_count() or 1)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(_hash_storage_layer, str(storage.root), layer_id, diff_id,
                                   str(self.cache_dir)): diff_id for diff_id, layer_id in jobs}
            for future in concurrent.futures.as_completed(futures):
                root = future.result()
                if root is not None:
                    self._store(futures[future], root)
                if self.progress:
                    self.progress(f"  {futures[future][:19]}... -> {root} ({time.monotonic() - started:.1f} s)")

    def resolve(self, reference: str) -> ImageInfo:
        if reference in self._memo:
            return self._memo[reference]
        local = reference
        inspected = self._inspect(local)
        digest = inspected.get("Digest", "")
        if "@sha256:" in reference and not reference.endswith(digest.removeprefix("sha256:")):
            raise ConfigError(f"image {reference}: local digest is {digest}")
        config = inspected.get("Config") or {}
        diff_ids = list((inspected.get("RootFS") or {}).get("Layers") or [])
        storage = self._storage() if any(self._cached(d) is None for d in diff_ids) else None
        for diff_id in diff_ids:
            if self._cached(diff_id) is None and storage is not None:
                root = storage.layer_root_hash(diff_id, self.cache_dir)
                if root is not None:
                    self._store(diff_id, root)
        hashes = [self._cached(d) for d in diff_ids]
        if any(h is None for h in hashes):
            hashes = self._hash_layers(local, diff_ids)
        info = ImageInfo(reference=reference, digest=digest, layers=tuple(hashes),
                         env=tuple(config.get("Env") or ()), working_dir=config.get("WorkingDir") or "",
                         user=config.get("User") or "")
        self._memo[reference] = info
        return info

    def _storage(self) -> _OverlayStorage | None:
        # `podman info` costs about a second; ask once per resolver.
        if "storage" not in self._found:
            self._found["storage"] = _OverlayStorage.find(self)
        return self._found["storage"]

    def _cache_file(self, diff_id: str) -> Path:
        return self.cache_dir / "layers" / (diff_id.replace(":", "-") + ".verity")

    def _cached(self, diff_id: str) -> str | None:
        path = self._cache_file(diff_id)
        return path.read_text().strip() if path.exists() else None

    def _hash_layers(self, reference: str, diff_ids: list[str]) -> list[str]:
        work = Path(tempfile.mkdtemp(prefix="ccr-layers-"))
        try:
            layout = work / "oci"
            self._podman("image", "save", "--uncompressed", "--format", "oci-dir", "-o", str(layout), reference)
            index = json.loads((layout / "index.json").read_text())
            manifest = _blob_json(layout, index["manifests"][0]["digest"])
            hashes = []
            for i, layer in enumerate(manifest["layers"]):
                path = _blob_path(layout, layer["digest"])
                with _open_layer(path, layer.get("mediaType", "")) as raw, tempfile.TemporaryFile(dir=work) as tar:
                    digest = hashlib.sha256()
                    while chunk := raw.read(1 << 20):
                        digest.update(chunk)
                        tar.write(chunk)
                    tar.seek(0)
                    diff_id = f"sha256:{digest.hexdigest()}"
                    root = self._cached(diff_id) or layer_root_hash(tar, work)
                self._store(diff_id, root)
                if i < len(diff_ids) and diff_ids[i] != diff_id:
                    raise ConfigError(f"image {reference}: layer {i} diff_id {diff_id} does not match the config")
                hashes.append(root)
            return hashes
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _store(self, diff_id: str, root: str) -> None:
        path = self._cache_file(diff_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(root + "\n")
        tmp.replace(path)


class _HashingReader(io.RawIOBase):
    """A file object over a stream of byte chunks that hashes everything read through it."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return 0
            self.sha256.update(chunk)
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


@dataclass
class _OverlayStorage:
    """containers/storage's overlay driver: layers.json, <id>.tar-split.gz and overlay/<id>/diff."""

    root: Path
    layers: dict[str, str]  # diff_id -> layer id

    @classmethod
    def find(cls, images: PodmanImages) -> _OverlayStorage | None:
        try:
            store = json.loads(images._podman("info", "--format", "json")).get("store") or {}
        except (ConfigError, json.JSONDecodeError):
            return None
        if store.get("graphDriverName") != "overlay":
            return None
        root = Path(store.get("graphRoot", ""))
        try:
            entries = json.loads((root / "overlay-layers" / "layers.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return cls(root, {e["diff-digest"]: e["id"] for e in entries if e.get("diff-digest")})

    def _chunks(self, layer_id: str):
        diff = self.root / "overlay" / layer_id / "diff"
        with gzip.open(self.root / "overlay-layers" / f"{layer_id}.tar-split.gz", "rt") as entries:
            for line in entries:
                entry = json.loads(line)
                if entry["type"] == 2:  # a segment: header or padding bytes, verbatim
                    yield base64.b64decode(entry["payload"])
                elif entry["type"] == 1 and entry.get("size"):  # a file's contents, from the diff directory
                    name = entry.get("name")
                    if name is None:
                        name = base64.b64decode(entry["name_raw"]).decode("utf-8", "surrogateescape")
                    path = diff / name.lstrip("/").removeprefix("./")
                    left = entry["size"]
                    with open(path, "rb") as data:
                        while left:
                            chunk = data.read(min(left, 1 << 20))
                            if not chunk:
                                raise ConfigError(f"layer {layer_id}: {name} is shorter than its tar header says")
                            left -= len(chunk)
                            yield chunk

    def layer_root_hash(self, diff_id: str, workdir: Path) -> str | None:
        layer_id = self.layers.get(diff_id)
        if layer_id is None or not (self.root / "overlay-layers" / f"{layer_id}.tar-split.gz").exists():
            return None
        workdir.mkdir(parents=True, exist_ok=True)
        reader = _HashingReader(self._chunks(layer_id))
        with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_IMAGE_MAX, dir=workdir) as image:
            tar_to_ext4(io.BufferedReader(reader, 1 << 20), image)
            reader.drain()
            if f"sha256:{reader.sha256.hexdigest()}" != diff_id:
                raise ConfigError(f"layer {diff_id} in podman's storage does not match its digest "
                                  f"(got sha256:{reader.sha256.hexdigest()}): the storage was modified")
            image.seek(0)
            return merkle_root_hash(image)


def _hash_storage_layer(root: str, layer_id: str, diff_id: str, workdir: str) -> str | None:
    """Worker-process entry point of `PodmanImages.prefetch`."""
    return _OverlayStorage(Path(root), {diff_id: layer_id}).layer_root_hash(diff_id, Path(workdir))


def _blob_path(layout: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algo / hexdigest


def _blob_json(layout: Path, digest: str) -> dict:
    return json.loads(_blob_path(layout, digest).read_text())


def _open_layer(path: Path, media_type: str) -> BinaryIO:
    if "zstd" in media_type:
        raise ConfigError(f"zstd-compressed layers are not supported ({path.name}); save the image uncompressed")
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # noqa: SIM115
