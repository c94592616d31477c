"""The volumes sidecar end to end with the real pieces: the MAA and Key Vault stand-ins, KEKs created
with `ccr keys create-kek` bound to a CCE policy hash, `ccr data publish` by the owners, the skr sidecar
on a mock SEV-SNP platform, and the volumes sidecar mounting what skr gets released; a KEK bound to
another policy is refused by Key Vault and `/status` says so."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from sidecars.cli import main as ccr
from sidecars.common import objectformat as fmt
from sidecars.common.azure_clients import container_client
from sidecars.common.deks import load_dek_file
from sidecars.common.process import ManagedProcess, wait_until
from sidecars.common.tls import LocalCA
from sidecars.emulators.azurite import start_azurite
from tests.standins import running
from tests.system.volumes.conftest import RoomKeys

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def emulation(tmp_path_factory):
    with running(tmp_path_factory.mktemp("emulators")) as endpoints:
        yield endpoints


@pytest.fixture(scope="module")
def tls_azurite(emulation, tmp_path_factory):
    """A spec's storage URL is https (sidecars/spec.py): Azurite with a certificate from the stand-ins' CA, so
    their one ca_bundle serves all (as tests/integration/volumes/conftest.py does)."""
    ca = LocalCA.create(Path(emulation["ca_bundle"]).parent)
    with start_azurite(tls=ca.issue_server_cert("azurite"), ca_file=str(ca.cert_file), loose=True,
                       log_path=tmp_path_factory.mktemp("azurite-tls") / "azurite.log") as az:
        yield az


def volume_entry(name: str) -> dict:
    return {"name": name, "store": {"account_url": "${storage_url}", "container": name},
            "encryption": {"mode": "CSE", "key": {"vault_url": "${keyvault_url}", "kek_name": f"{name}-kek",
                                                  "dek_secret_name": f"{name}-dek",
                                                  "maa_endpoint": "${maa_endpoint}"}}}


def test_sidecar_mounts_what_skr_releases_and_says_why_not_otherwise(emulation, tls_azurite, shared_dir, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("CCR_HOME", str(tmp_path / "owners"))
    endpoints_file = tmp_path / "endpoints.json"
    endpoints_file.write_text(json.dumps({**emulation, "storage_url": tls_azurite.blob_url}))
    room_policy = hashlib.sha256(b"the room's CCE policy").hexdigest()
    other_policy = hashlib.sha256(b"some other room").hexdigest()
    suffix = uuid.uuid4().hex[:8]
    src, sink, denied = f"src-{suffix}", f"sink-{suffix}", f"denied-{suffix}"
    spec = {"apiVersion": "ccr/v1", "name": "room", "maa_endpoint": "${maa_endpoint}",
            "contract": {"id": "c1", "governance": {"endpoint": "https://cgs.example"}},
            "datasources": [volume_entry(src), volume_entry(denied)], "datasinks": [volume_entry(sink)],
            "application": {"name": "app", "image": "localhost/app@sha256:" + "0" * 64,
                            "resources": {"cpu": 0.5, "memory_gb": 0.5}}}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    data = os.urandom(200_000)
    for name, policy, files in ((src, room_policy, {"in/data.bin": data}), (sink, room_policy, {}),
                                (denied, other_policy, {"x": b"not for this room"})):
        assert ccr(["keys", "create-kek", "--name", f"{name}-kek", "--host-data", policy,
                    "--endpoints", str(endpoints_file)]) == 0
        folder = tmp_path / "publish" / name
        folder.mkdir(parents=True)
        for rel, content in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(content)
        # the KEK's public half comes from the vault (the spec's kek_name), the rest from spec + endpoints
        assert ccr(["data", "publish", str(folder), "--spec", str(spec_file), "--volume", name,
                    "--endpoints", str(endpoints_file)]) == 0

    skr_ready = tmp_path / "skr.json"
    skr = ManagedProcess("skr", [sys.executable, "-m", "sidecars.skr", "--port", "0", "--endpoints",
                                 str(endpoints_file), "--platform", "mock", "--host-data", room_policy,
                                 "--ready-file", str(skr_ready)],
                         ready=skr_ready.exists, ready_timeout=30, log_path=tmp_path / "skr.log")
    ready = tmp_path / "ready.json"
    keys = RoomKeys(tmp_path / "room-keys")
    sidecar = ManagedProcess("volumes", [
        sys.executable, "-m", "sidecars", "sidecar", "run", "volumes", "--spec", str(spec_file),
        "--endpoints", str(endpoints_file), "--mount-root", str(shared_dir), "--run-dir", str(tmp_path / "run"),
        "--port", "0", "--ready-file", str(ready),
        # the sink's manifest key, as the contract CA would endorse it for the room (no governance here)
        "--manifest-key", str(keys.key_file), "--manifest-cert", str(keys.cert_file)],
        ready=ready.exists, ready_timeout=30, stop_timeout=30, log_path=tmp_path / "sidecar.log")
    with skr:
        sidecar.argv += ["--skr-url", json.loads(skr_ready.read_text())["url"]]
        with sidecar:
            url = json.loads(ready.read_text())["url"]
            wait_until(lambda: httpx.get(f"{url}/status").json()["status"] != "starting", 90, "mounts")
            resp = httpx.get(f"{url}/status")
            assert resp.status_code == 503 and resp.json()["status"] == "failed"
            mounts = {m["name"]: m for m in resp.json()["mounts"]}
            assert mounts[src]["state"] == "mounted" and mounts[sink]["state"] == "mounted"
            assert mounts[denied]["state"] == "failed"
            assert f"did not release KEK {denied}-kek" in mounts[denied]["reason"]
            assert "x-ms-sevsnpvm-hostdata" in mounts[denied]["reason"]  # Key Vault's policy says which claim
            assert not os.path.ismount(shared_dir / denied)

            assert (shared_dir / src / "in" / "data.bin").read_bytes() == data
            (shared_dir / sink / "result.txt").write_text("42\n")
        # uvicorn ends its graceful shutdown by raising again the SIGTERM it caught: -15 after the
        # mounts were stopped (the log says so; the unmounts and the sink's commit are checked below)
        assert sidecar.popen.returncode == -signal.SIGTERM and "mounts stopped" in sidecar.output()
    assert not os.path.ismount(shared_dir / src) and not os.path.ismount(shared_dir / sink)
    owner_key = load_dek_file(tmp_path / "owners" / "deks" / f"devstoreaccount1-{sink}.json")
    blob = container_client(tls_azurite.blob_url, sink, ca_bundle=emulation["ca_bundle"]).download_blob(
        "result.txt").readall()
    assert fmt.decrypt(owner_key, fmt.ObjectLocation("devstoreaccount1", sink, "result.txt"), blob) == b"42\n"
