"""A datasink through the mounted filesystem: sequential writes committed on close, clear errnos for
what is not supported, and nothing committed when the filesystem dies before close."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess

import pytest
from azure.core.exceptions import ResourceNotFoundError

from sidecars.common import objectformat as fmt
from sidecars.common.process import wait_until
from sidecars.volumes import manifest as mf

pytestmark = pytest.mark.root


def committed(bucket) -> dict[str, int]:
    return {b.name: b.size for b in bucket.client.list_blobs()}


def test_write_close_commits_ciphertext_that_the_owner_can_decrypt(bucket) -> None:
    mnt = bucket.mount(writable=True)
    data = os.urandom(5 * 1024 * 1024 + 17)  # more than one staged block
    os.makedirs(mnt / "out" / "deep")
    with open(mnt / "out/deep/result.bin", "wb") as f:
        for i in range(0, len(data), 100_000):
            f.write(data[i:i + 100_000])
        assert committed(bucket) == {}  # nothing exists under the name before close
    (mnt / "small.txt").write_text("done\n")
    stored = committed(bucket)
    assert stored == {"out/deep/result.bin": fmt.ciphertext_size(len(data)), "small.txt": fmt.ciphertext_size(5)}
    assert fmt.decrypt(bucket.dek, bucket.volume.location("out/deep/result.bin"), bucket.raw("out/deep/result.bin")) \
        == data
    assert (mnt / "small.txt").read_text() == "done\n"  # committed files read back
    # the app's uid writes too
    subprocess.run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c",
                    f"echo app > {mnt}/by-app.txt"], check=True)
    assert fmt.decrypt(bucket.dek, bucket.volume.location("by-app.txt"), bucket.raw("by-app.txt")) == b"app\n"


def test_unsupported_operations_have_clear_errnos(bucket) -> None:
    mnt = bucket.mount(writable=True)
    fd = os.open(mnt / "f.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"a" * 1000)
    with pytest.raises(OSError) as info:
        os.pwrite(fd, b"b", 10)  # overwrite in the middle
    assert info.value.errno == errno.ESPIPE
    with pytest.raises(OSError) as info:
        os.pwrite(fd, b"b", 5000)  # a hole
    assert info.value.errno == errno.ESPIPE
    with pytest.raises(OSError) as info:
        os.open(mnt / "f.bin", os.O_RDONLY)  # still being written
    assert info.value.errno == errno.EBUSY
    os.close(fd)
    for attempt, expected in ((lambda: os.rename(mnt / "f.bin", mnt / "g.bin"), errno.ENOTSUP),
                              (lambda: os.open(mnt / "f.bin", os.O_WRONLY | os.O_APPEND), errno.ENOTSUP),
                              (lambda: os.open(mnt / "f.bin", os.O_RDWR), errno.ENOTSUP),
                              (lambda: os.truncate(mnt / "f.bin", 10), errno.ENOTSUP)):
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == expected
    assert (mnt / "f.bin").read_bytes() == b"a" * 1000  # nothing was corrupted
    (mnt / "f.bin").write_bytes(b"replaced")  # O_TRUNC rewrites the whole object
    assert (mnt / "f.bin").read_bytes() == b"replaced"
    os.unlink(mnt / "f.bin")
    assert committed(bucket) == {}


def test_filesystem_killed_before_close_commits_nothing(bucket) -> None:
    bucket.put("previous.bin", b"old result")
    mnt = bucket.mount(writable=True)
    proc, _ = bucket.mounts[-1]
    blob = bucket.client.get_blob_client("partial.bin")

    def staged() -> bool:
        try:
            return bool(blob.get_block_list("uncommitted")[1])
        except ResourceNotFoundError:
            return False

    with open(mnt / "partial.bin", "wb") as f:
        f.write(os.urandom(6 * 1024 * 1024))  # one full block, staged in the background
        f.flush()
        wait_until(staged, 20, "a staged block")
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait()
        with pytest.raises(OSError):
            f.write(b"more")
            f.flush()
        with pytest.raises(OSError):
            f.close()
    assert committed(bucket) == {"previous.bin": fmt.ciphertext_size(10)}
    assert staged()  # the data reached storage, but only as uncommitted blocks


def test_sigterm_abandons_files_still_open(bucket) -> None:
    mnt = bucket.mount(writable=True)
    proc, _ = bucket.mounts[-1]
    f = open(mnt / "open.bin", "wb")  # noqa: SIM115 (kept open across the stop on purpose)
    f.write(b"x" * 1000)
    f.flush()
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=20) == 0
    with pytest.raises(OSError):
        f.close()
    assert committed(bucket) == {mf.MANIFEST_BLOB: len(bucket.raw(mf.MANIFEST_BLOB))}
    assert json.loads(bucket.raw(mf.MANIFEST_BLOB))["manifest"]["objects"] == []  # the room vouches for nothing
    assert "not committing open.bin" in bucket.log()
