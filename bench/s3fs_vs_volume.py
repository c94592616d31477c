"""Plain SSE over S3: Debian's s3fs FUSE driver (what the reference mounts) against the volumes sidecar's own
S3 backend, on the S3 stand-in (moto over TLS, as `ccr emulators start` runs it), same object, one run
(needs root for FUSE).

Figures (each the best of PASSES, the contenders alternating so that load from other work hits all alike;
every mount pass is a fresh mount, so its caches are cold):

- s3fs_read_mbps / s3fs_write_mbps: sequential read of the object through an s3fs mount; sequential
  write + close (s3fs uploads on close) of as many bytes.
- sse_volume_read_mbps / sse_volume_write_mbps: the same through the volumes sidecar's mount of an SSE
  volume on the same bucket (its key pair given as a file, as the owner's own checks do; a room gets it
  through governance).
- s3_sdk_read_mbps / s3_sdk_write_mbps: boto3 as a user would call it (one get_object read to the end,
  one put_object): the yardstick both are divided by, in s3fs_read_ratio, sse_volume_read_ratio etc.

The decision this informs is in docs/storage.md ("Plain SSE over S3: s3fs or our backend").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .volumes import mbps

SIZE = int(os.environ.get("CCR_BENCH_S3FS_MIB", "128")) * 1024 * 1024
PASSES = 2
CHUNK = 1024 * 1024
BUCKET = "ccr-bench-s3fs"
#: the S3 stand-in (moto) accepts any key pair; s3fs insists on one in a 0600 file.
KEY_ID, SECRET = "bench", "bench-secret"


def _s3fs_mount(endpoints: dict, root: Path) -> Path:
    mountpoint = Path(tempfile.mkdtemp(dir=root, prefix="s3fs-"))
    passwd = root / "s3fs.passwd"
    passwd.write_text(f"{KEY_ID}:{SECRET}\n")
    passwd.chmod(0o600)
    # Defaults otherwise, as the reference runs it; path-style because the stand-in is one host; TLS checked
    # against the stand-ins' CA (s3fs's libcurl reads CURL_CA_BUNDLE).
    subprocess.run(["s3fs", BUCKET, str(mountpoint), "-o",
                    f"url={endpoints['s3_endpoint']},use_path_request_style,endpoint={endpoints['s3_region']},"
                    f"passwd_file={passwd}"],
                   check=True, capture_output=True, timeout=30,
                   env={**os.environ, "CURL_CA_BUNDLE": endpoints["ca_bundle"]})
    return mountpoint


def _volume_mount(endpoints: dict, root: Path, *, writable: bool) -> tuple[object, Path]:
    """The volumes sidecar's mount of the bucket as an SSE volume (as the room runs it), started and ready."""
    from sidecars.common.process import ManagedProcess
    from sidecars.spec import S3Store

    mountpoint = Path(tempfile.mkdtemp(dir=root, prefix="volume-"))
    status = mountpoint.with_suffix(".status.json")
    credentials = root / "s3-credentials.json"
    credentials.write_text(json.dumps({"access_key_id": KEY_ID, "secret_access_key": SECRET}))
    credentials.chmod(0o600)
    store = S3Store(kind="s3", endpoint=endpoints["s3_endpoint"], region=endpoints["s3_region"], bucket=BUCKET,
                    addressing="path", credentials={"secret": "bench-s3"})
    argv = [sys.executable, "-m", "sidecars.volumes.mount", "--s3-store", store.model_dump_json(),
            "--s3-credentials-file", str(credentials), "--mode", "SSE", "--mountpoint", str(mountpoint),
            "--status-file", str(status), "--ca-bundle", endpoints["ca_bundle"]]
    argv += ["--writable", "--no-manifest"] if writable else []
    proc = ManagedProcess(f"mount-{mountpoint.name}", argv, ready=status.exists, ready_timeout=60, stop_timeout=60,
                          log_path=mountpoint.with_suffix(".log"))
    proc.start()
    return proc, mountpoint


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
    import boto3  # lazy: only this benchmark needs boto3 (70 ms to import)
    from botocore.config import Config

    from sidecars.emulators import runner

    root = Path(tempfile.mkdtemp(prefix="ccr-bench-s3fs-"))
    endpoints = runner.start(root / "emulators", registry=[e for e in runner.REGISTRY if e.name == "s3"])
    data = os.urandom(SIZE)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoints["s3_endpoint"], region_name=endpoints["s3_region"],
                          aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, verify=endpoints["ca_bundle"],
                          config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="data.bin", Body=data)
        best = dict.fromkeys(("sdk_read", "sdk_write", "s3fs_read", "s3fs_write", "volume_read", "volume_write"), 0.0)
        for attempt in range(PASSES):
            started = time.perf_counter()
            assert len(s3.get_object(Bucket=BUCKET, Key="data.bin")["Body"].read()) == SIZE
            best["sdk_read"] = max(best["sdk_read"], mbps(SIZE, time.perf_counter() - started))
            started = time.perf_counter()
            s3.put_object(Bucket=BUCKET, Key=f"sdk-{attempt}.bin", Body=data)
            best["sdk_write"] = max(best["sdk_write"], mbps(SIZE, time.perf_counter() - started))

            mountpoint = _s3fs_mount(endpoints, root)
            try:
                started = time.perf_counter()
                assert _read_all(mountpoint / "data.bin") == SIZE
                best["s3fs_read"] = max(best["s3fs_read"], mbps(SIZE, time.perf_counter() - started))
                started = time.perf_counter()
                _write_all(mountpoint / f"s3fs-{attempt}.bin", data)
                best["s3fs_write"] = max(best["s3fs_write"], mbps(SIZE, time.perf_counter() - started))
            finally:
                _unmount(mountpoint)
            assert s3.head_object(Bucket=BUCKET, Key=f"s3fs-{attempt}.bin")["ContentLength"] == SIZE

            proc, mountpoint = _volume_mount(endpoints, root, writable=False)
            try:
                started = time.perf_counter()
                assert _read_all(mountpoint / "data.bin") == SIZE
                best["volume_read"] = max(best["volume_read"], mbps(SIZE, time.perf_counter() - started))
            finally:
                proc.stop()
            proc, mountpoint = _volume_mount(endpoints, root, writable=True)
            try:
                started = time.perf_counter()
                _write_all(mountpoint / f"volume-{attempt}.bin", data)
                best["volume_write"] = max(best["volume_write"], mbps(SIZE, time.perf_counter() - started))
            finally:
                proc.stop()
            assert s3.head_object(Bucket=BUCKET, Key=f"volume-{attempt}.bin")["ContentLength"] == SIZE
    finally:
        runner.stop(root / "emulators")
    shutil.rmtree(root, ignore_errors=True)
    print(f"   {SIZE // 2**20} MiB over TLS; read:  s3fs {best['s3fs_read']:.0f} MB/s, our mount (SSE) "
          f"{best['volume_read']:.0f} MB/s, boto3 get_object {best['sdk_read']:.0f} MB/s")
    print(f"   write + close: s3fs {best['s3fs_write']:.0f} MB/s, our mount (SSE) {best['volume_write']:.0f} MB/s, "
          f"boto3 put_object {best['sdk_write']:.0f} MB/s")
    return {"s3_sdk_read_mbps": best["sdk_read"], "s3_sdk_write_mbps": best["sdk_write"],
            "s3fs_read_mbps": best["s3fs_read"], "s3fs_write_mbps": best["s3fs_write"],
            "sse_volume_read_mbps": best["volume_read"], "sse_volume_write_mbps": best["volume_write"],
            "s3fs_read_ratio": best["s3fs_read"] / best["sdk_read"],
            "s3fs_write_ratio": best["s3fs_write"] / best["sdk_write"],
            "sse_volume_read_ratio": best["volume_read"] / best["sdk_read"],
            "sse_volume_write_ratio": best["volume_write"] / best["sdk_write"]}
