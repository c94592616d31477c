"""Attacks on the stored objects, observed through the mounted filesystem: every one is EIO (and
logged), and no read ever returns bytes that differ from what the owner published."""

from __future__ import annotations

import errno
import os

import pytest

from sidecars.common import objectformat as fmt

pytestmark = pytest.mark.root
S = fmt.SEGMENT_SIZE


@pytest.fixture(params=["azure_blob", "s3"])
def store_kind(request) -> str:
    """Every attack over Azure Blob and over S3."""
    return request.param


def segments(ciphertext: bytes) -> list[bytes]:
    return [ciphertext[i:i + S] for i in range(0, len(ciphertext), S)]


def attacks(ct: bytes, other_ct: bytes) -> dict[str, bytes]:
    seg = segments(ct)
    flipped = bytearray(ct)
    flipped[2 * S + 777] ^= 0x20
    header = bytearray(ct)
    header[1 + 32 + 3] ^= 0x01  # a nonce-prefix byte
    return {
        "flip-one-bit": bytes(flipped),
        "swap-two-segments": seg[0] + seg[2] + seg[1] + b"".join(seg[3:]),
        "drop-last-segment": b"".join(seg[:-1]),
        "append-a-segment": ct + seg[1],
        "copy-a-over-b": other_ct,
        "edit-the-header": bytes(header),
    }


def read_until_error(path) -> tuple[bytes, OSError | None]:
    got = bytearray()
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            try:
                chunk = os.read(fd, 128 * 1024)
            except OSError as exc:
                return bytes(got), exc
            if not chunk:
                return bytes(got), None
            got += chunk
    finally:
        os.close(fd)


def test_every_attack_is_eio_never_wrong_plaintext(bucket) -> None:
    originals = {}
    for case in attacks(b"\0" * 5 * S, b""):
        originals[case] = os.urandom(4 * S + 1000)  # 5 segments
        bucket.put(case, originals[case])
    bucket.put("a", os.urandom(4 * S + 1000))  # blob A, same size class as the victims
    blob_a = bucket.raw("a")
    for case in originals:
        bucket.put_raw(case, attacks(bucket.raw(case), blob_a)[case])

    mnt = bucket.mount()
    for case, data in originals.items():
        got, error = read_until_error(mnt / case)
        assert error is not None and error.errno == errno.EIO, f"{case}: read gave no EIO"
        assert data.startswith(got), f"{case}: returned bytes that are not the published plaintext"
    # random access: the damaged segment fails, an intact one still reads (each segment verifies alone)
    data = originals["flip-one-bit"]
    with open(mnt / "flip-one-bit", "rb", buffering=0) as f:
        with pytest.raises(OSError) as info:
            os.pread(f.fileno(), 100, 2 * S)
        assert info.value.errno == errno.EIO
        assert os.pread(f.fileno(), 100, 4 * S) == data[4 * S:4 * S + 100]
    assert (mnt / "a").read_bytes() != b""  # the untouched blob still reads
    log = bucket.log()
    for case in originals:
        assert f"/{case}:" in log and "EIO" in log, f"{case} not logged"


def test_wrong_dek_gives_no_plaintext(bucket, shared_dir) -> None:
    from sidecars.common.deks import save_dek_file

    bucket.put("secret.csv", b"name,salary\nalice,100\n" * 1000)
    wrong = shared_dir / "wrong.dek.json"
    save_dek_file(wrong, fmt.DataKey.generate())
    mnt = bucket.mount(dek_file=wrong)
    assert os.stat(mnt / "secret.csv").st_size == 22_000  # sizes need no key
    got, error = read_until_error(mnt / "secret.csv")
    assert got == b"" and error is not None and error.errno == errno.EIO
