"""The volumes sidecar end to end: spec → wrapped DEKs from Key Vault → KEKs released by skr → mounts,
with `/status` saying which mount failed and why."""

from __future__ import annotations

import json
import os
import sys
import uuid

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from sidecars.common.process import ManagedProcess, wait_until
from sidecars.common.tls import LocalCA
from sidecars.spec import EncryptionMode
from sidecars.volumes import format as fmt
from sidecars.volumes.clients import container_client, secret_client
from sidecars.volumes.keys import Kek
from sidecars.volumes.owner import ensure_dek, load_dek_file
from sidecars.volumes.store import Volume
from tests.volumes_support import KeyRelease, KeyVaultSecrets, serve_in_thread

pytestmark = pytest.mark.root


def owner_publishes(azurite, vault_url, ca, tmp, name, files, kek_jwk) -> None:
    container = container_client(azurite.blob_url, name)
    container.create_container()
    public = Kek.from_jwk({k: kek_jwk[k] for k in ("kty", "n", "e")}, kid=f"{name}-kek")
    dek = ensure_dek(secrets=secret_client(vault_url, ca_bundle=ca), secret_name=f"{name}-dek", kek=public,
                     dek_file=tmp / f"{name}.dek.json", mode=EncryptionMode.CSE).dek
    volume = Volume(container, EncryptionMode.CSE, dek)
    for blob, data in files.items():
        writer = volume.writer(blob)
        writer.write(data)
        writer.commit()


def volume_entry(name, vault_url, storage_url) -> dict:
    return {"name": name, "store": {"account_url": storage_url, "container": name},
            "encryption": {"mode": "CSE", "key": {"vault_url": vault_url, "kek_name": f"{name}-kek",
                                                  "dek_secret_name": f"{name}-dek",
                                                  "maa_endpoint": "https://maa.example"}}}


def test_sidecar_mounts_what_skr_releases_and_says_why_not_otherwise(azurite, shared_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CCR_ACCESS_TOKEN", "room-token")
    ca = LocalCA.create(tmp_path / "ca")
    vault, skr = KeyVaultSecrets(), KeyRelease()
    suffix = uuid.uuid4().hex[:8]
    src, sink, denied = f"src-{suffix}", f"sink-{suffix}", f"denied-{suffix}"
    keks = {n: json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
            for n in (src, sink, denied)}
    with serve_in_thread(vault.app, ca.issue_server_cert("kv")) as vault_url, \
            serve_in_thread(skr.app, None) as skr_url:
        data = os.urandom(200_000)
        owner_publishes(azurite, vault_url, str(ca.cert_file), tmp_path, src, {"in/data.bin": data}, keks[src])
        owner_publishes(azurite, vault_url, str(ca.cert_file), tmp_path, sink, {}, keks[sink])
        owner_publishes(azurite, vault_url, str(ca.cert_file), tmp_path, denied, {"x": b"secret"}, keks[denied])
        skr.released = {f"{src}-kek": keks[src], f"{sink}-kek": keks[sink]}  # not the third one

        spec = {"apiVersion": "ccr/v1", "name": "room", "maa_endpoint": "https://maa.example",
                "contract": {"id": "c1", "governance": {"endpoint": "https://cgs.example"}},
                "datasources": [volume_entry(src, vault_url, azurite.blob_url),
                                volume_entry(denied, vault_url, azurite.blob_url)],
                "datasinks": [volume_entry(sink, vault_url, azurite.blob_url)],
                "application": {"name": "app", "image": "localhost/app@sha256:" + "0" * 64,
                                "resources": {"cpu": 0.5, "memory_gb": 0.5}}}
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(spec))
        ready = tmp_path / "ready.json"
        sidecar = ManagedProcess("volumes", [
            sys.executable, "-m", "sidecars", "sidecar", "volumes", "--spec", str(spec_file),
            "--skr-url", skr_url, "--ca-bundle", str(ca.cert_file), "--mount-root", str(shared_dir),
            "--run-dir", str(tmp_path / "run"), "--port", "0", "--ready-file", str(ready)],
            ready=ready.exists, ready_timeout=30, stop_timeout=30, log_path=tmp_path / "sidecar.log")
        with sidecar:
            url = json.loads(ready.read_text())["url"]

            def status() -> httpx.Response:
                return httpx.get(f"{url}/status", timeout=5)

            wait_until(lambda: status().json()["status"] != "starting", 60, "mounts")
            resp = status()
            assert resp.status_code == 503
            mounts = {m["name"]: m for m in resp.json()["mounts"]}
            assert resp.json()["status"] == "failed"
            assert mounts[src]["state"] == "mounted" and mounts[sink]["state"] == "mounted"
            assert mounts[denied]["state"] == "failed"
            assert f"did not release KEK {denied}-kek" in mounts[denied]["reason"]
            assert "release policy does not match" in mounts[denied]["reason"]
            assert not os.path.ismount(shared_dir / denied)

            assert (shared_dir / src / "in" / "data.bin").read_bytes() == data
            (shared_dir / sink / "result.txt").write_text("42\n")
            assert {r["kid"] for r in skr.requests} == {f"{src}-kek", f"{sink}-kek", f"{denied}-kek"}
        assert sidecar.popen.returncode == 0
        assert not os.path.ismount(shared_dir / src) and not os.path.ismount(shared_dir / sink)
        owner_key = load_dek_file(tmp_path / f"{sink}.dek.json")
        blob = container_client(azurite.blob_url, sink).download_blob("result.txt").readall()
        assert fmt.decrypt(owner_key, fmt.ObjectLocation("devstoreaccount1", sink, "result.txt"), blob) == b"42\n"
