"""The stand-ins as `ccr emulators start` runs them, KEKs bound to HOST_DATA H, and skr sidecars on mock
platforms whose reports say what each test needs (H or not, debuggable or not, trusted chain or not)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyReleasePolicy

from sidecars.common.devtokens import DevTokenCredential
from sidecars.common.process import ManagedProcess
from sidecars.common.release_policy import sevsnp_policy
from sidecars.emulators import runner

REPO = Path(__file__).resolve().parents[3]
HOST_DATA = "4d" * 32


@dataclass
class Room:
    endpoints: dict
    rsa_kek: str
    oct_kek: str
    oct_material: bytes
    keys: KeyClient
    run_dir: Path


@dataclass
class Skr:
    url: str
    process: ManagedProcess

    def log(self) -> str:
        return self.process.output()


@pytest.fixture(scope="session")
def room(tmp_path_factory) -> Room:
    run_dir = tmp_path_factory.mktemp("emulators")
    endpoints = runner.start(run_dir)
    try:
        keys = KeyClient(endpoints["keyvault_url"], DevTokenCredential.from_dir(endpoints["dev_tokens_dir"]),
                         connection_verify=endpoints["ca_bundle"], verify_challenge_resource=False)
        # the stand-ins' MAA says ccr-mock-uvm of the mock platform: a policy rendered for them accepts it
        policy = KeyReleasePolicy(json.dumps(sevsnp_policy(endpoints["maa_endpoint"], HOST_DATA,
                                                           accept_mock_uvm=True)).encode())
        rsa_kek = f"kek-{uuid.uuid4().hex[:8]}"
        keys.create_rsa_key(rsa_kek, hardware_protected=True, exportable=True, release_policy=policy)
        oct_kek, material = f"dek-{uuid.uuid4().hex[:8]}", os.urandom(32)
        keys.import_key(oct_kek, JsonWebKey(kty="oct-HSM", k=material), exportable=True, release_policy=policy)
        yield Room(endpoints, rsa_kek, oct_kek, material, keys, run_dir)
    finally:
        runner.stop(run_dir)


def start_skr(room: Room, name: str, *extra: str) -> Skr:
    ready = room.run_dir / f"{name}.ready.json"
    proc = ManagedProcess(name, [sys.executable, "-m", "sidecars.skr", "--port", "0", "--ready-file", str(ready),
                                 "--endpoints", str(room.run_dir / "endpoints.json"), "--platform", "mock", *extra],
                          ready=ready.exists, ready_timeout=30, log_path=room.run_dir / "logs" / f"{name}.log",
                          cwd=REPO).start()
    return Skr(json.loads(ready.read_text())["url"], proc)


@pytest.fixture(scope="session")
def skr(room) -> Skr:
    sidecar = start_skr(room, "skr-good", "--host-data", HOST_DATA)
    yield sidecar
    sidecar.process.stop()


@pytest.fixture(scope="session")
def skr_other_policy(room) -> Skr:
    sidecar = start_skr(room, "skr-other", "--host-data", "5e" * 32)
    yield sidecar
    sidecar.process.stop()


@pytest.fixture(scope="session")
def skr_debuggable(room) -> Skr:
    sidecar = start_skr(room, "skr-debug", "--host-data", HOST_DATA, "--debuggable")
    yield sidecar
    sidecar.process.stop()


@pytest.fixture(scope="session")
def skr_unknown_chain(room, tmp_path_factory) -> Skr:
    """A platform whose AMD chain and UVM signer the attestation service does not trust."""
    from sidecars.attestation import MockPlatform

    directory = tmp_path_factory.mktemp("untrusted-platform")
    MockPlatform.create(directory)
    sidecar = start_skr(room, "skr-untrusted", "--host-data", HOST_DATA, "--mock-platform-dir", str(directory))
    yield sidecar
    sidecar.process.stop()
