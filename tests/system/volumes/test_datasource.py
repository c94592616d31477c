"""A datasource through the mounted filesystem: the tree, plaintext sizes, reads, read-only-ness."""

from __future__ import annotations

import errno
import os
import random
import subprocess

import pytest

from sidecars.common import objectformat as fmt

pytestmark = pytest.mark.root


def test_tree_sizes_and_contents(bucket) -> None:
    big = os.urandom(9 * 1024 * 1024 + 123)  # > 2 read-ahead blocks, not segment aligned
    files = {"a.csv": b"id,v\n1,2\n", "empty": b"", "d/e/big.bin": big}
    for name, data in files.items():
        bucket.put(name, data)
    mnt = bucket.mount()
    assert sorted(os.listdir(mnt)) == ["a.csv", "d", "empty"]
    assert os.listdir(mnt / "d" / "e") == ["big.bin"]
    for name, data in files.items():
        assert os.stat(mnt / name).st_size == len(data)
        assert (mnt / name).read_bytes() == data
    rng = random.Random(7)
    with open(mnt / "d/e/big.bin", "rb", buffering=0) as f:
        for _ in range(50):
            off, size = rng.randrange(len(big)), rng.choice([1, 4096, 70_000, 300_000])
            assert os.pread(f.fileno(), size, off) == big[off:off + size]
    st = os.statvfs(mnt)
    assert st.f_bsize == fmt.SEGMENT_SIZE and st.f_bfree == 0


def test_read_only_everything_else_is_erofs(bucket) -> None:
    bucket.put("a.csv", b"x")
    mnt = bucket.mount()
    attempts = [lambda: os.open(mnt / "new", os.O_WRONLY | os.O_CREAT), lambda: os.open(mnt / "a.csv", os.O_RDWR),
                lambda: os.unlink(mnt / "a.csv"),
                lambda: os.mkdir(mnt / "d"), lambda: os.rename(mnt / "a.csv", mnt / "b"),
                lambda: os.truncate(mnt / "a.csv", 0)]
    for attempt in attempts:
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS
    assert (mnt / "a.csv").read_bytes() == b"x"


def test_app_uid_can_read_through_allow_other(bucket) -> None:
    bucket.put("data.txt", b"for the app\n")
    mnt = bucket.mount()
    out = subprocess.run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "cat", str(mnt / "data.txt")],
                         capture_output=True, check=True)
    assert out.stdout == b"for the app\n"
    assert os.stat(mnt / "data.txt").st_uid == 1000


def test_sigterm_unmounts_cleanly(bucket) -> None:
    bucket.put("a", b"1")
    mnt = bucket.mount()
    proc = bucket.mounts[0][0]
    assert proc.stop() == 0
    with open("/proc/mounts") as mounts:
        assert str(mnt) not in mounts.read()


def test_a_mount_left_behind_by_a_stopped_session_is_detached(tmp_path) -> None:
    """The stop's last step: whatever libfuse left mounted is detached (a path with a space, as mountinfo
    escapes it)."""
    from sidecars.volumes.fs import _detach_if_still_mounted, _still_mounted

    target = tmp_path / "left behind"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ccr-test", str(target)], check=True)
    try:
        assert _still_mounted(str(target))
        _detach_if_still_mounted(str(target))
        assert not _still_mounted(str(target))
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_sse_volume_mounts_the_stored_bytes(make_bucket) -> None:
    from sidecars.spec import EncryptionMode

    bucket = make_bucket(EncryptionMode.SSE)
    bucket.put("plain.txt", b"storage encrypts this itself\n")
    mnt = bucket.mount()
    assert (mnt / "plain.txt").read_bytes() == b"storage encrypts this itself\n"
