"""Encrypted S3 volumes against boto3's own transfer, on the S3 stand-in (moto's server over TLS, as `ccr
emulators start` runs it), one object of CCR_BENCH_S3_MIB MiB (default 128; needs root for FUSE).

- s3_volume_read_ratio: sequential read through a CSE datasource mount ÷ boto3's managed download
  (`download_fileobj`, its default TransferConfig: parallel ranged GETs) of the same stored object
  (goal ≥ 1.0).
- s3_volume_write_ratio: sequential write + close through a CSE datasink mount (a multipart upload
  completed at close) ÷ boto3's managed upload (`upload_fileobj`, multipart in parallel) of the same
  amount (goal ≥ 0.8).
Each figure is the best of PASSES runs, baseline and mount alternating, every mount pass a fresh mount.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .volumes import mbps, read_mounted, write_mounted

SIZE = int(os.environ.get("CCR_BENCH_S3_MIB", "128")) * 1024 * 1024
PASSES = 2
CHUNK = 1024 * 1024
KEYS = {"access_key_id": "bench-owner", "secret_access_key": "bench-owner-secret"}


class _Discard(io.RawIOBase):
    """Where the baseline download goes: no copy the mount's reader does not make either."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:  # boto3 seeks to place each part
        return offset

    def seekable(self) -> bool:
        return True


def mount_s3(store_json: str, credentials: Path, ca_bundle: str, dek_file: Path, root: Path, *, writable: bool):
    from sidecars.common.process import ManagedProcess

    mountpoint = Path(tempfile.mkdtemp(dir=root, prefix="s3-"))
    status = mountpoint.with_suffix(".status.json")
    argv = [sys.executable, "-m", "sidecars.volumes.mount", "--s3-store", store_json, "--s3-credentials-file",
            str(credentials), "--ca-bundle", ca_bundle, "--mountpoint", str(mountpoint), "--dek-file", str(dek_file),
            "--status-file", str(status)]
    if writable:
        argv += ["--writable", "--no-manifest"]
    proc = ManagedProcess("mount-s3", argv, ready=status.exists, ready_timeout=60, stop_timeout=120,
                          log_path=mountpoint.with_suffix(".log"))
    proc.start()
    return proc, mountpoint


def run() -> dict[str, float]:
    if os.geteuid() != 0:
        raise SystemExit("bench s3_volumes: needs root (FUSE mounts)")
    from sidecars.common import objectformat as fmt
    from sidecars.common.deks import save_dek_file
    from sidecars.common.s3_clients import s3_client
    from sidecars.common.s3_credentials import key_pair_from_secret
    from sidecars.emulators import runner
    from sidecars.spec import EncryptionMode, S3Credentials, S3Store
    from sidecars.volumes.store import Volume
    from sidecars.volumes.stores.s3 import S3ObjectStore

    root = Path(tempfile.mkdtemp(prefix="ccr-bench-s3-"))
    root.chmod(0o755)
    data = os.urandom(SIZE)
    dek = fmt.DataKey.generate()
    dek_file = root / "dek.json"
    save_dek_file(dek_file, dek)
    credentials = root / "s3.json"
    credentials.write_text(json.dumps(KEYS))
    keys = key_pair_from_secret(credentials.read_text(), "bench")
    endpoints = runner.start(root / "emulators", registry=[e for e in runner.REGISTRY if e.name == "s3"])
    try:
        ca = endpoints["ca_bundle"]

        def store(bucket: str) -> S3Store:
            return S3Store(kind="s3", endpoint=endpoints["s3_endpoint"], region=endpoints["s3_region"],
                           bucket=bucket, addressing="path", credentials=S3Credentials(secret="bench_s3"))

        client = s3_client(store("source"), keys, ca_bundle=ca)
        for bucket in ("source", "sink", "baseline"):
            client.create_bucket(Bucket=bucket)
        writer = Volume(S3ObjectStore(client, store("source")), EncryptionMode.CSE, dek).writer("data.bin")
        writer.write(data)
        writer.commit()
        stored = client.head_object(Bucket="source", Key="data.bin")["ContentLength"]
        print(f"   segment size {dek.segment_size // 1024} KiB, object {SIZE // 2**20} MiB", flush=True)

        boto_read = mount_read = 0.0
        for _ in range(PASSES):
            started = time.perf_counter()
            client.download_fileobj("source", "data.bin", _Discard())
            boto_read = max(boto_read, mbps(stored, time.perf_counter() - started))
            proc, mnt = mount_s3(store("source").model_dump_json(), credentials, ca, dek_file, root, writable=False)
            try:
                mount_read = max(mount_read, read_mounted(mnt / "data.bin", SIZE))
            finally:
                proc.stop()

        boto_write = mount_write = 0.0
        for attempt in range(PASSES):
            started = time.perf_counter()
            client.upload_fileobj(io.BytesIO(data), "baseline", f"data-{attempt}.bin")
            boto_write = max(boto_write, mbps(SIZE, time.perf_counter() - started))
            proc, mnt = mount_s3(store("sink").model_dump_json(), credentials, ca, dek_file, root, writable=True)
            try:
                mount_write = max(mount_write, write_mounted(mnt / f"out-{attempt}.bin", data))
            finally:
                proc.stop()
            size = client.head_object(Bucket="sink", Key=f"out-{attempt}.bin")["ContentLength"]
            assert size == fmt.ciphertext_size(SIZE)
    finally:
        runner.stop(root / "emulators")
        shutil.rmtree(root, ignore_errors=True)
    print(f"   read:  mount {mount_read:.0f} MB/s, boto3 download_fileobj {boto_read:.0f} MB/s")
    print(f"   write: mount {mount_write:.0f} MB/s, boto3 upload_fileobj {boto_write:.0f} MB/s")
    return {
        "s3_volume_read_ratio": mount_read / boto_read,
        "s3_volume_write_ratio": mount_write / boto_write,
        "s3_volume_read_mbps": mount_read,
        "s3_volume_write_mbps": mount_write,
    }
