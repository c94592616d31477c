"""Plain SSE over S3: Debian's s3fs FUSE driver (what the reference mounts) against the volumes sidecar's own
S3 backend, on one moto server, same object, one run (needs root for FUSE).

Figures (each the best of PASSES, the contenders alternating so that load from other work hits all alike;
every mount pass is a fresh mount, so its caches are cold):

- s3fs_read_mbps / s3fs_write_mbps: sequential read of the object through an s3fs mount; sequential
  write + close (s3fs uploads on close) of as many bytes.
- sse_volume_read_mbps / sse_volume_write_mbps: the same through the volumes sidecar's mount of an SSE
  volume on the same bucket (only when the S3 backend is present in this tree).
- s3_sdk_read_mbps / s3_sdk_write_mbps: boto3 as a user would call it (one get_object read to the end,
  one put_object): the yardstick both are divided by, in s3fs_read_ratio etc.

The decision this informs is in docs/storage.md ("Plain SSE over S3: s3fs or our backend").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = int(os.environ.get("CCR_BENCH_S3FS_MIB", "128")) * 1024 * 1024
PASSES = 2
CHUNK = 1024 * 1024
BUCKET = "ccr-bench-s3fs"
#: moto's server accepts any key pair; s3fs insists on one in a 0600 file.
KEY_ID, SECRET = "bench", "bench-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def _s3fs_mount(endpoint: str, root: Path) -> Path:
    mountpoint = Path(tempfile.mkdtemp(dir=root, prefix="s3fs-"))
    passwd = root / "s3fs.passwd"
    passwd.write_text(f"{KEY_ID}:{SECRET}\n")
    passwd.chmod(0o600)
    # Defaults otherwise, as the reference runs it; path-style because moto's server is one host.
    subprocess.run(["s3fs", BUCKET, str(mountpoint), "-o",
                    f"url={endpoint},use_path_request_style,endpoint=us-east-1,passwd_file={passwd}"],
                   check=True, capture_output=True, timeout=30)
    return mountpoint


def _unmount(mountpoint: Path) -> None:
    subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True, timeout=60)


def _read_all(path: Path) -> int:
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            total += len(chunk)
    return total


def _write_all(path: Path, data: bytes) -> None:
    view = memoryview(data)
    with open(path, "wb", buffering=0) as f:
        for pos in range(0, len(data), CHUNK):
            f.write(view[pos:pos + CHUNK])


def run() -> dict[str, float]:
    if os.geteuid() != 0:
        raise SystemExit("bench s3fs_vs_volume: needs root (FUSE mounts)")
    if shutil.which("s3fs") is None:
        raise SystemExit("bench s3fs_vs_volume: Debian's s3fs is not installed (scripts/setup.sh)")
    import boto3  # lazy: only this benchmark needs boto3 (≈0.3 s to import)

    from sidecars.common.process import ManagedProcess, port_open

    root = Path(tempfile.mkdtemp(prefix="ccr-bench-s3fs-"))
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = ManagedProcess("moto-bench-s3fs", [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                                              "-p", str(port)],
                          ready=port_open("127.0.0.1", port), ready_timeout=60, log_path=root / "moto.log")
    data = os.urandom(SIZE)
    figures: dict[str, float] = {}
    with moto:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID,
                          aws_secret_access_key=SECRET)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="data.bin", Body=data)
        sdk_read = sdk_write = s3fs_read = s3fs_write = 0.0
        for attempt in range(PASSES):
            started = time.perf_counter()
            assert len(s3.get_object(Bucket=BUCKET, Key="data.bin")["Body"].read()) == SIZE
            sdk_read = max(sdk_read, _mbps(SIZE, time.perf_counter() - started))
            started = time.perf_counter()
            s3.put_object(Bucket=BUCKET, Key=f"sdk-{attempt}.bin", Body=data)
            sdk_write = max(sdk_write, _mbps(SIZE, time.perf_counter() - started))

            mountpoint = _s3fs_mount(endpoint, root)
            try:
                started = time.perf_counter()
                assert _read_all(mountpoint / "data.bin") == SIZE
                s3fs_read = max(s3fs_read, _mbps(SIZE, time.perf_counter() - started))
                started = time.perf_counter()
                _write_all(mountpoint / f"s3fs-{attempt}.bin", data)
                s3fs_write = max(s3fs_write, _mbps(SIZE, time.perf_counter() - started))
            finally:
                _unmount(mountpoint)
            head = s3.head_object(Bucket=BUCKET, Key=f"s3fs-{attempt}.bin")
            assert head["ContentLength"] == SIZE
        figures |= {"s3_sdk_read_mbps": sdk_read, "s3_sdk_write_mbps": sdk_write, "s3fs_read_mbps": s3fs_read,
                    "s3fs_write_mbps": s3fs_write, "s3fs_read_ratio": s3fs_read / sdk_read,
                    "s3fs_write_ratio": s3fs_write / sdk_write}
    shutil.rmtree(root, ignore_errors=True)
    print(f"   {SIZE // 2**20} MiB; read:  s3fs {s3fs_read:.0f} MB/s, boto3 get_object {sdk_read:.0f} MB/s")
    print(f"   write: s3fs {s3fs_write:.0f} MB/s, boto3 put_object {sdk_write:.0f} MB/s")
    return figures
