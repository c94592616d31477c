"""Layer hashing: our tar2ext4 image is a real ext4 file system holding the layer, and our dm-verity root
hash is the one the dm-verity format gives (checked against cryptsetup's `veritysetup`, an independent
implementation, and against the hash tree built by hand from the format's definition)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from sidecars.renderings.ext4 import Ext4Error, tar_to_ext4
from sidecars.renderings.layers import LockedImages, layer_root_hash, merkle_root_hash

BLOCK = 4096
SALT = bytes(32)


def veritysetup_root(data_path: Path, tmp_path: Path) -> str:
    done = subprocess.run(
        ["veritysetup", "format", str(data_path), str(tmp_path / "hash.img"), "--no-superblock",
         "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", "--salt=" + "00" * 32],
        capture_output=True, text=True, check=True)
    return re.search(r"Root hash:\s+([0-9a-f]{64})", done.stdout).group(1)


needs_veritysetup = pytest.mark.skipif(shutil.which("veritysetup") is None,
                                       reason="veritysetup (cryptsetup-bin) is installed by make setup")


@needs_veritysetup
@pytest.mark.parametrize("blocks", [2, 7, 129, 300])
def test_root_hash_equals_veritysetup(tmp_path, blocks):
    data = os.urandom(blocks * BLOCK)
    path = tmp_path / "data.img"
    path.write_bytes(data)
    assert merkle_root_hash(io.BytesIO(data)) == veritysetup_root(path, tmp_path)


def test_single_block_is_hashed_once_more_as_hcsshim_does():
    # veritysetup's root for one data block is that block's hash; hcsshim always builds one hash level.
    data = os.urandom(BLOCK)
    level = hashlib.sha256(SALT + data).digest().ljust(BLOCK, b"\0")
    assert merkle_root_hash(io.BytesIO(data)) == hashlib.sha256(SALT + level).hexdigest()


def test_full_level_gets_an_extra_zero_block_as_hcsshim_does():
    # 128 blocks fill exactly one hash block; hcsshim's MerkleTree still appends a zero block to that
    # level and hashes once more, so the root differs from veritysetup's here. Built by hand:
    data = os.urandom(128 * BLOCK)
    level0 = b"".join(hashlib.sha256(SALT + data[i:i + BLOCK]).digest() for i in range(0, len(data), BLOCK))
    level0 += bytes(BLOCK)
    level1 = hashlib.sha256(SALT + level0[:BLOCK]).digest() + hashlib.sha256(SALT + level0[BLOCK:]).digest()
    level1 += bytes(BLOCK - len(level1))
    assert merkle_root_hash(io.BytesIO(data)) == hashlib.sha256(SALT + level1).hexdigest()


def test_a_flipped_byte_changes_the_root_hash():
    data = bytearray(os.urandom(10 * BLOCK))
    before = merkle_root_hash(io.BytesIO(bytes(data)))
    data[5 * BLOCK + 17] ^= 1
    assert merkle_root_hash(io.BytesIO(bytes(data))) != before


def _layer_tar(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for name in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(content), 0o640, 1700000000, 1000, 1000
            tar.addfile(info, io.BytesIO(content))
        for info in extra:
            tar.addfile(info)
    return out.getvalue()


def _debugfs(image: Path, command: str) -> str:
    return subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def sample_layer() -> bytes:
    link = tarfile.TarInfo("app/current")
    link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "/app/bin/tool", 1700000000
    long_link = tarfile.TarInfo("app/long")
    long_link.type, long_link.linkname = tarfile.SYMTYPE, "/" + "x" * 100
    hard = tarfile.TarInfo("app/bin/tool-hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "app/bin/tool"
    whiteout = tarfile.TarInfo("app/.wh.removed")
    opaque = tarfile.TarInfo("data/.wh..wh..opq")
    noted = tarfile.TarInfo("app/bin/ping")
    noted.pax_headers = {"SCHILY.xattr.user.ccr-note": "measured"}
    return _layer_tar({"app/bin/tool": os.urandom(300_000), "app/README": b"hello\n", "data/seed": b"x" * 5000},
                      [link, long_link, hard, whiteout, opaque, noted])


@pytest.mark.skipif(shutil.which("debugfs") is None, reason="debugfs (e2fsprogs) needed")
def test_tar_becomes_an_ext4_file_system_with_the_layer_contents(tmp_path, sample_layer):
    image = tmp_path / "layer.ext4"
    with open(image, "w+b") as out:
        size = tar_to_ext4(io.BytesIO(sample_layer), out)
    assert image.stat().st_size == size and size % BLOCK == 0

    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    problems = [line for line in fsck.stdout.splitlines()
                if line and not line.startswith(("Pass ", "e2fsck ", str(image)))]
    # The one complaint is hcsshim's own: it leaves the inode bitmap's padding bits clear.
    assert problems == ["Padding at end of inode bitmap is not set. Fix? no"], fsck.stdout

    with tarfile.open(fileobj=io.BytesIO(sample_layer)) as tar:
        tool = tar.extractfile("app/bin/tool").read()
    _debugfs(image, f"dump /app/bin/tool {tmp_path / 'tool'}")
    assert (tmp_path / "tool").read_bytes() == tool
    assert _debugfs(image, "cat /app/README") == "hello\n"
    listing = _debugfs(image, "ls -l /app")
    assert re.search(r"\s120777 \(7\)\s+0\s+0\s+13 .* current", listing)
    assert re.search(r"\s20000 \(3\)\s+0\s+0\s+0 .* removed", listing), "whiteout is a 0:0 char device"
    assert "/" + "x" * 100 in _debugfs(image, "cat /app/long")
    stat_tool, stat_hard = _debugfs(image, "stat /app/bin/tool"), _debugfs(image, "stat /app/bin/tool-hard")
    assert "Links: 2" in stat_tool and stat_tool.split()[1] == stat_hard.split()[1]
    assert "User:  1000   Group:  1000" in stat_tool
    assert "trusted.overlay.opaque" in _debugfs(image, "ea_list /data")
    assert "user.ccr-note (8) = \"measured\"" in _debugfs(image, "ea_list /app/bin/ping")


def test_layer_hash_is_deterministic_and_content_bound(sample_layer):
    first = layer_root_hash(io.BytesIO(sample_layer))
    assert first == layer_root_hash(io.BytesIO(sample_layer))
    tampered = bytearray(sample_layer)
    index = tampered.index(b"hello\n")
    tampered[index] = ord("j")
    assert layer_root_hash(io.BytesIO(bytes(tampered))) != first


@needs_veritysetup
def test_layer_hash_is_the_dm_verity_root_of_the_ext4_image(tmp_path, sample_layer):
    image = tmp_path / "layer.ext4"
    with open(image, "w+b") as out:
        tar_to_ext4(io.BytesIO(sample_layer), out)
    assert (image.stat().st_size // BLOCK) % 128, "a 128-block multiple would hit the hcsshim padding quirk"
    assert layer_root_hash(io.BytesIO(sample_layer)) == veritysetup_root(image, tmp_path)


def test_layer_lock_round_trips(tmp_path, job_images):
    path = tmp_path / "lock.json"
    path.write_text(job_images.dump())
    assert LockedImages.load(path).images == job_images.images


@pytest.mark.skipif(shutil.which("debugfs") is None, reason="debugfs (e2fsprogs) needed")
def test_unordered_entries_and_hard_link_to_symlink(tmp_path):
    # The cases hcsshim's own tar2ext4 tests cover: children before their directory, a hard link to a
    # symlink. A later entry replacing a file that already has data is refused, as hcsshim refuses it.
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add(name, kind=tarfile.REGTYPE, body=b"", link=""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size, info.mode, info.mtime = kind, link, len(body), 0o751, 1700000000
            tar.addfile(info, io.BytesIO(body))
        add("foo/bar.txt", body=b"inside bar.txt")
        add("A/B/b.txt", body=b"inside b.txt")
        add("foo/", tarfile.DIRTYPE)
        add("A/B/", tarfile.DIRTYPE)
        add("tmp/zzz.txt", body=b"inside zzz")
        add("tmp/xxx.txt", tarfile.SYMTYPE, link="/tmp/zzz.txt")
        add("tmp/yyy.txt", tarfile.LNKTYPE, link="tmp/xxx.txt")
    layer = out.getvalue()
    image = tmp_path / "layer.ext4"
    with open(image, "w+b") as f:
        tar_to_ext4(io.BytesIO(layer), f)
    assert _debugfs(image, "cat /foo/bar.txt") == "inside bar.txt"
    assert _debugfs(image, "cat /A/B/b.txt") == "inside b.txt"
    assert re.search(r"40751 \(2\).* B\n", _debugfs(image, "ls -l /A")), "the directory's own entry sets its mode"
    symlink, hard = _debugfs(image, "stat /tmp/xxx.txt"), _debugfs(image, "stat /tmp/yyy.txt")
    assert "Type: symlink" in symlink and "Links: 2" in symlink and symlink.split()[1] == hard.split()[1]

    replaced = io.BytesIO()
    with tarfile.open(fileobj=replaced, mode="w") as tar:
        for body in (b"first", b"second"):
            info = tarfile.TarInfo("data.txt")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with pytest.raises(Ext4Error, match="data.txt: cannot overwrite file with non-inline data"):
        tar_to_ext4(io.BytesIO(replaced.getvalue()), io.BytesIO())
