"""Encrypted volumes against plain blob access, on Azurite, ≥ 256 MiB (needs root for FUSE).

- volume_read_ratio: sequential read through a datasource mount ÷ one plain single-stream SDK
  download of the same ciphertext (goal ≥ 1.0: parallel read-ahead beats the naive download).
- volume_write_ratio: sequential write + close through a datasink mount ÷ one plain SDK upload of the
  same amount (goal ≥ 0.8).
- volume_random_read_ms: median latency of 4 KiB reads at random offsets through a fresh mount (cold
  segment cache, kernel read-ahead off via POSIX_FADV_RANDOM), and volume_random_read_ratio = that ÷
  the median of one ranged GET of one segment with the SDK (goal ≤ 1.5).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIZE = int(os.environ.get("CCR_BENCH_VOLUME_MIB", "256")) * 1024 * 1024
RANDOM_READS = 200
PASSES = 2
CHUNK = 1024 * 1024


def mount_volume(azurite, container: str, dek_file: Path, root: Path, *, writable: bool):
    """The volumes sidecar's mount of `container` (as the room runs it), started and ready: (process, folder)."""
    from sidecars.common.process import ManagedProcess

    mountpoint = Path(tempfile.mkdtemp(dir=root, prefix=f"{container}-"))
    status = mountpoint.with_suffix(".status.json")
    argv = [sys.executable, "-m", "sidecars.volumes.mount", "--storage-url", azurite.blob_url, "--container",
            container, "--mountpoint", str(mountpoint), "--dek-file", str(dek_file), "--status-file", str(status)]
    if writable:
        # The objects' digests are computed either way; only the one signed upload at the end is skipped.
        argv += ["--writable", "--no-manifest"]
    proc = ManagedProcess(f"mount-{container}", argv, ready=status.exists, ready_timeout=60, stop_timeout=60,
                          log_path=mountpoint.with_suffix(".log"))
    proc.start()
    return proc, mountpoint


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def read_mounted(path: Path, size: int = SIZE) -> float:
    """MB/s of one sequential read of `path` (a mounted volume's file of `size` bytes) in CHUNK reads."""
    started = time.perf_counter()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            total += len(chunk)
    seconds = time.perf_counter() - started
    assert total == size, f"read {total} of {size} bytes"
    return mbps(total, seconds)


def write_mounted(path: Path, data: bytes) -> float:
    """MB/s of one sequential write of `data` to `path` (a mounted volume's new file) in CHUNK writes; the
    close, which commits the object to storage, is inside the timing."""
    view = memoryview(data)
    started = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        for pos in range(0, len(data), CHUNK):
            f.write(view[pos:pos + CHUNK])
    return mbps(len(data), time.perf_counter() - started)


def run() -> dict[str, float]:
    if os.geteuid() != 0:
        raise SystemExit("bench volumes: needs root (FUSE mounts)")
    from azure.storage.blob import ContainerClient

    from sidecars.common import objectformat as fmt
    from sidecars.common.azure_clients import container_client
    from sidecars.common.deks import save_dek_file
    from sidecars.emulators.azurite import start_azurite
    from sidecars.spec import EncryptionMode
    from sidecars.volumes.store import Volume

    root = Path(tempfile.mkdtemp(prefix="ccr-bench-volumes-"))
    data = os.urandom(SIZE)
    dek = fmt.DataKey.generate()
    dek_file = root / "dek.json"
    save_dek_file(dek_file, dek)
    print(f"   segment size {dek.segment_size // 1024} KiB, object {SIZE // 2**20} MiB", flush=True)
    with start_azurite(log_path=root / "azurite.log") as azurite:
        source = container_client(azurite.blob_url, "source")
        source.create_container()
        writer = Volume(source, EncryptionMode.CSE, dek).writer("data.bin")
        writer.write(data)
        writer.commit()
        # The baselines use the SDK as a user would: a client with default settings. Each figure is the
        # best of PASSES runs, baseline and mount alternating, so that load from other work on the
        # machine hits both alike; every mount pass is a fresh mount (cold caches).
        blob = ContainerClient.from_connection_string(azurite.connection_string, "source").get_blob_client("data.bin")
        ciphertext_len = blob.get_blob_properties().size
        sdk_read = mount_read = 0.0
        for _ in range(PASSES):
            started = time.perf_counter()
            assert len(blob.download_blob(max_concurrency=1).readall()) == ciphertext_len
            sdk_read = max(sdk_read, mbps(ciphertext_len, time.perf_counter() - started))
            proc, mnt = mount_volume(azurite, "source", dek_file, root, writable=False)
            try:
                mount_read = max(mount_read, read_mounted(mnt / "data.bin"))
            finally:
                proc.stop()

        # 4 KiB reads at random offsets through a fresh mount, each followed by one SDK ranged GET of one
        # segment at another random place: the two medians are taken under the same conditions.
        rng = random.Random(1)
        segment = dek.segment_size
        proc, mnt = mount_volume(azurite, "source", dek_file, root, writable=False)
        try:
            latencies, get_latencies = [], []
            fd = os.open(mnt / "data.bin", os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            for _ in range(RANDOM_READS):
                offset = rng.randrange(SIZE - 4096)
                started = time.perf_counter()
                got = os.pread(fd, 4096, offset)
                latencies.append(time.perf_counter() - started)
                assert got == data[offset:offset + 4096]
                start = rng.randrange(ciphertext_len // segment) * segment
                started = time.perf_counter()
                blob.download_blob(offset=start, length=segment, max_concurrency=1).readall()
                get_latencies.append(time.perf_counter() - started)
            os.close(fd)
        finally:
            proc.stop()
        random_ms = statistics.median(latencies) * 1000
        get_ms = statistics.median(get_latencies) * 1000

        baseline = ContainerClient.from_connection_string(azurite.connection_string, "baseline")
        baseline.create_container()
        sink = container_client(azurite.blob_url, "sink")
        sink.create_container()
        sdk_write = mount_write = 0.0
        for attempt in range(PASSES):
            started = time.perf_counter()
            baseline.upload_blob(f"data-{attempt}.bin", data)
            sdk_write = max(sdk_write, mbps(SIZE, time.perf_counter() - started))
            proc, mnt = mount_volume(azurite, "sink", dek_file, root, writable=True)
            try:
                mount_write = max(mount_write, write_mounted(mnt / f"out-{attempt}.bin", data))
            finally:
                proc.stop()
            assert sink.get_blob_client(f"out-{attempt}.bin").get_blob_properties().size == fmt.ciphertext_size(SIZE)

    shutil.rmtree(root, ignore_errors=True)
    print(f"   read:  mount {mount_read:.0f} MB/s, SDK single stream {sdk_read:.0f} MB/s")
    print(f"   write: mount {mount_write:.0f} MB/s, SDK upload {sdk_write:.0f} MB/s")
    print(f"   random 4 KiB read: mount {random_ms:.2f} ms median, one {segment // 1024} KiB ranged GET "
          f"{get_ms:.2f} ms")
    return {
        "volume_read_ratio": mount_read / sdk_read,
        "volume_write_ratio": mount_write / sdk_write,
        "volume_random_read_ms": random_ms,
        "volume_random_read_ratio": random_ms / get_ms,
        "volume_read_mbps": mount_read,
        "volume_write_mbps": mount_write,
        "volume_segment_size": float(dek.segment_size),
    }
