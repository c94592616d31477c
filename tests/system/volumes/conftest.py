"""Real Azurite, the S3 stand-in (moto's server, as `ccr emulators start` runs it) and real FUSE mounts (root).
Mount points live under a world-traversable temp dir so that the app's uid can reach them; every mount is
stopped (SIGTERM → clean unmount) by its fixture. A test module parametrizes `store_kind` to run its attacks
over both kinds of store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from cryptography.hazmat.primitives import serialization

from sidecars.common import objectformat as fmt
from sidecars.common.azure_clients import container_client
from sidecars.common.deks import save_dek_file
from sidecars.common.process import ManagedProcess
from sidecars.emulators.azurite import Azurite, start_azurite
from sidecars.spec import EncryptionMode, S3Credentials, S3Store
from sidecars.volumes import manifest as mf
from sidecars.volumes.owner import publish_manifest
from sidecars.volumes.store import Volume, customer_key_material
from sidecars.volumes.stores.s3 import S3ObjectStore
from tests.unit.volumes.test_manifest import endorse, make_ca, pem

#: The key pair the S3 stand-in is given (moto accepts any: it does not check signatures).
S3_KEYS = {"access_key_id": "s3core-owner", "secret_access_key": "s3core-owner-secret"}


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
def store_kind() -> str:
    """Azure Blob unless a test module parametrizes it."""
    return "azure_blob"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ccr-vol-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Bucket:
    """A fresh container (or S3 bucket) with its own DEK, and a way to mount it."""

    def __init__(self, azurite: Azurite, root: Path, mode: EncryptionMode = EncryptionMode.CSE,
                 s3: dict | None = None):
        self.azurite = azurite
        self.root = root
        self.s3_endpoints = s3
        self.dek = fmt.DataKey.generate() if mode is not EncryptionMode.SSE else None
        if s3 is None:
            self.name = f"c{uuid.uuid4().hex[:16]}"
            self.client = container_client(azurite.blob_url, self.name)
            self.client.create_container()
            self.volume = Volume(self.client, mode, self.dek)
        else:
            self.name = f"s3core-{uuid.uuid4().hex[:16]}"
            self.store = S3Store(kind="s3", endpoint=s3["s3_endpoint"], region=s3["s3_region"], bucket=self.name,
                                 prefix="data/in", addressing="path", credentials=S3Credentials(secret="owner_s3"))
            self.s3 = boto3.client("s3", endpoint_url=s3["s3_endpoint"], region_name=s3["s3_region"],
                                   aws_access_key_id=S3_KEYS["access_key_id"],
                                   aws_secret_access_key=S3_KEYS["secret_access_key"], verify=s3["ca_bundle"],
                                   config=Config(s3={"addressing_style": "path"}))
            self.s3.create_bucket(Bucket=self.name)
            self.volume = Volume(S3ObjectStore(self.s3, self.store, customer_key_material(mode, self.dek)), mode,
                                 self.dek)
            self.credentials_file = root / f"{self.name}.s3.json"
            self.credentials_file.write_text(json.dumps(S3_KEYS))
        self.dek_file = root / f"{self.name}.dek.json"
        if self.dek:
            save_dek_file(self.dek_file, self.dek)
        self.mounts: list[tuple[ManagedProcess, Path]] = []
        self.keys: RoomKeys | None = None
        self.entries: dict[str, mf.Entry] = {}

    def where(self, storage_url: str | None = None) -> list[str]:
        """The mount's arguments naming the store."""
        if self.s3_endpoints is None:
            return ["--storage-url", storage_url or self.azurite.blob_url, "--container", self.name]
        store = self.store if storage_url is None else S3Store.model_validate(
            {**self.store.model_dump(), "endpoint": storage_url})
        return ["--s3-store", store.model_dump_json(), "--s3-credentials-file", str(self.credentials_file),
                "--ca-bundle", self.s3_endpoints["ca_bundle"]]

    @property
    def service_url(self) -> str:
        """Where the store's service listens (a relay in front of it takes its place)."""
        return self.azurite.blob_url if self.s3_endpoints is None else self.s3_endpoints["s3_endpoint"]

    def download_args(self) -> list[str]:
        """`ccr data download`'s arguments naming the store (the owner's AWS credentials are in the environment)."""
        if self.s3_endpoints is None:
            return ["--storage-url", self.azurite.blob_url, "--container", self.name]
        return ["--s3", f"s3://{self.name}/{self.store.prefix}", "--s3-endpoint", self.s3_endpoints["s3_endpoint"],
                "--ca-bundle", self.s3_endpoints["ca_bundle"]]

    def key(self, name: str) -> str:
        return self.store.key_of(name)

    def delete(self, name: str) -> None:
        if self.s3_endpoints is None:
            self.client.delete_blob(name)
        else:
            self.s3.delete_object(Bucket=self.name, Key=self.key(name))

    def sizes(self) -> dict[str, int]:
        if self.s3_endpoints is None:
            return {b.name: b.size for b in self.client.list_blobs()}
        listed = self.s3.list_objects_v2(Bucket=self.name).get("Contents", [])
        return {o["Key"].removeprefix(f"{self.store.prefix}/"): o["Size"] for o in listed}

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
        """The stored bytes, as the storage provider has them (SSE-C: moto does not enforce the key)."""
        if self.s3_endpoints is None:
            return self.client.download_blob(name).readall()
        return self.s3.get_object(Bucket=self.name, Key=self.key(name))["Body"].read()

    def put_raw(self, name: str, data: bytes) -> None:
        """Storage writes what it likes under the name (the attacks)."""
        if self.s3_endpoints is None:
            self.client.upload_blob(name, data, overwrite=True)
        else:
            self.s3.put_object(Bucket=self.name, Key=self.key(name), Body=data)

    def mount(self, *, writable: bool = False, dek_file: Path | None = None, extra: list[str] = (),
              storage_url: str | None = None) -> Path:
        mountpoint = self.root / f"mnt-{uuid.uuid4().hex[:6]}-{self.name}"
        mountpoint.mkdir()
        status = self.root / f"{mountpoint.name}.status.json"
        argv = [sys.executable, "-m", "sidecars.volumes.mount", *self.where(storage_url),
                "--mountpoint", str(mountpoint), "--status-file", str(status),
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
        argv = [sys.executable, "-m", "sidecars.volumes.mount", *self.where(),
                "--mountpoint", str(mountpoint), "--status-file", str(status),
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
def make_bucket(request, azurite, shared_dir, store_kind, monkeypatch):
    made: list[Bucket] = []
    s3 = None
    if store_kind == "s3":
        s3 = request.getfixturevalue("s3_emulation")  # tests/conftest.py
        # The owner's own AWS credentials, as boto3's chain finds them (`ccr data download --s3`).
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEYS["access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_KEYS["secret_access_key"])

    def make(mode: EncryptionMode = EncryptionMode.CSE) -> Bucket:
        made.append(Bucket(azurite, shared_dir, mode, s3))
        return made[-1]

    yield make
    for b in made:
        b.unmount_all()


@pytest.fixture
def bucket(make_bucket) -> Bucket:
    return make_bucket()
