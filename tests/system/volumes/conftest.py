"""Real Azurite and real FUSE mounts (root). Mount points live under a world-traversable temp dir so
that the app's uid can reach them; every mount is stopped (SIGTERM → clean unmount) by its fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sidecars.common import objectformat as fmt
from sidecars.common.azure_clients import container_client
from sidecars.common.deks import save_dek_file
from sidecars.common.process import ManagedProcess
from sidecars.emulators.azurite import Azurite, start_azurite
from sidecars.spec import EncryptionMode
from sidecars.volumes import manifest as mf
from sidecars.volumes.owner import publish_manifest
from sidecars.volumes.store import Volume
from tests.unit.volumes.test_manifest import endorse, make_ca, pem


class RoomKeys:
    """A contract CA as CGS holds it, and a sink key it endorsed, as an attested room gets one."""

    def __init__(self, root: Path):
        root.mkdir()
        self.ca_key, self.ca_cert = make_ca()
        self.key = mf.new_signing_key()
        self.key_file, self.cert_file, self.ca_file = root / "sink.key.pem", root / "sink.cert.pem", root / "ca.pem"
        self.key_file.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        self.cert_file.write_text(endorse(self.ca_key, self.ca_cert, self.key))
        self.ca_file.write_bytes(pem(self.ca_cert))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    with start_azurite(log_path=tmp_path_factory.mktemp("azurite") / "azurite.log") as az:
        yield az


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ccr-vol-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Bucket:
    """A fresh container with its own DEK, and a way to mount it."""

    def __init__(self, azurite: Azurite, root: Path, mode: EncryptionMode = EncryptionMode.CSE):
        self.azurite = azurite
        self.root = root
        self.name = f"c{uuid.uuid4().hex[:16]}"
        self.client = container_client(azurite.blob_url, self.name)
        self.client.create_container()
        self.dek = fmt.DataKey.generate() if mode is not EncryptionMode.SSE else None
        self.volume = Volume(self.client, mode, self.dek)
        self.dek_file = root / f"{self.name}.dek.json"
        if self.dek:
            save_dek_file(self.dek_file, self.dek)
        self.mounts: list[tuple[ManagedProcess, Path]] = []
        self.keys: RoomKeys | None = None
        self.entries: dict[str, mf.Entry] = {}

    def publish(self, name: str, data: bytes) -> mf.Entry:
        """Upload as `ccr data publish` does; `publish_manifest` then writes the manifest of what was published."""
        writer = self.volume.writer(name)
        writer.write(data)
        writer.commit()
        self.entries[name] = writer.entry()
        return self.entries[name]

    def publish_manifest(self) -> str:
        return publish_manifest(self.volume, dict(self.entries)).sha256()

    def put(self, name: str, data: bytes) -> None:
        writer = self.volume.writer(name)
        writer.write(data)
        writer.commit()

    def raw(self, name: str) -> bytes:
        return self.client.download_blob(name).readall()

    def put_raw(self, name: str, data: bytes) -> None:
        self.client.upload_blob(name, data, overwrite=True)

    def mount(self, *, writable: bool = False, dek_file: Path | None = None, extra: list[str] = (),
              storage_url: str | None = None) -> Path:
        mountpoint = self.root / f"mnt-{len(self.mounts)}-{self.name}"
        mountpoint.mkdir()
        status = self.root / f"{mountpoint.name}.status.json"
        argv = [sys.executable, "-m", "sidecars.volumes.mount", "--storage-url", storage_url or self.azurite.blob_url,
                "--container", self.name, "--mountpoint", str(mountpoint), "--status-file", str(status),
                "--mode", self.volume.mode.value, "--uid", "1000", "--gid", "1000", *extra]
        if self.dek:
            argv += ["--dek-file", str(dek_file or self.dek_file)]
        if writable:
            argv.append("--writable")
            if not any(a.startswith("--manifest-key") or a == "--no-manifest" for a in extra):
                self.keys = self.keys or RoomKeys(self.root / f"keys-{self.name}")
                argv += ["--manifest-key", str(self.keys.key_file), "--manifest-cert", str(self.keys.cert_file),
                         "--contract-id", "collab"]
        proc = ManagedProcess("mount", argv, ready=status.exists, ready_timeout=30, stop_timeout=20,
                              log_path=self.root / f"{mountpoint.name}.log")
        proc.start()
        self.mounts.append((proc, mountpoint))
        return mountpoint

    def start_mount(self, argv_extra: list[str] = ()) -> tuple[ManagedProcess, Path, Path]:
        """A read-only mount that may fail: returns the process, its mount point and its status file."""
        mountpoint = self.root / f"mnt-try-{uuid.uuid4().hex[:8]}-{self.name}"
        mountpoint.mkdir()
        status = self.root / f"{mountpoint.name}.status.json"
        argv = [sys.executable, "-m", "sidecars.volumes.mount", "--storage-url", self.azurite.blob_url,
                "--container", self.name, "--mountpoint", str(mountpoint), "--status-file", str(status),
                "--mode", self.volume.mode.value, "--uid", "1000", "--gid", "1000", *argv_extra]
        if self.dek:
            argv += ["--dek-file", str(self.dek_file)]
        proc = ManagedProcess("mount", argv, ready=status.exists, ready_timeout=30, stop_timeout=20,
                              log_path=self.root / f"{mountpoint.name}.log")
        return proc, mountpoint, status

    def log(self, index: int = -1) -> str:
        return self.mounts[index][0].output()

    def unmount_all(self) -> None:
        for proc, mountpoint in self.mounts:
            proc.stop()
            if is_mounted(mountpoint):  # only after a test killed the filesystem on purpose
                subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        self.mounts.clear()


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


@pytest.fixture
def make_bucket(azurite, shared_dir):
    made: list[Bucket] = []

    def make(mode: EncryptionMode = EncryptionMode.CSE) -> Bucket:
        made.append(Bucket(azurite, shared_dir, mode))
        return made[-1]

    yield make
    for b in made:
        b.unmount_all()


@pytest.fixture
def bucket(make_bucket) -> Bucket:
    return make_bucket()
