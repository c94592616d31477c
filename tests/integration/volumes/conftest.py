"""Real Azurite (HTTPS, certificate from the emulation's CA) and the Key Vault stand-in for the volumes tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient

from sidecars.common.tls import LocalCA
from sidecars.emulators.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def local_ca(emulation) -> LocalCA:
    """The emulation's CA: Azurite's certificate comes from it too, so one ca_bundle serves all."""
    return LocalCA.create(Path(emulation["ca_bundle"]).parent)


@pytest.fixture(scope="session")
def azurite(local_ca, tmp_path_factory) -> Iterator[Azurite]:
    tls = local_ca.issue_server_cert("azurite")
    with start_azurite(tls=tls, ca_file=str(local_ca.cert_file), loose=True,
                       log_path=tmp_path_factory.mktemp("azurite") / "azurite.log") as az:
        yield az


@pytest.fixture
def blob_service(azurite) -> BlobServiceClient:
    return BlobServiceClient(azurite.blob_url, credential={"account_name": azurite.account_name,
                                                           "account_key": azurite.account_key},
                             connection_verify=azurite.ca_file)


@pytest.fixture
def container_name() -> str:
    return f"c{uuid.uuid4().hex[:20]}"


@pytest.fixture(scope="session")
def emulation(keyvault_emulation) -> dict:
    """The session's Key Vault stand-in (tests/conftest.py): its endpoints."""
    return keyvault_emulation


@pytest.fixture(scope="session")
def vault_secrets(emulation) -> SecretClient:
    """The owner's view of the vault, to inspect what the commands stored."""
    from sidecars.common.devtokens import DevTokenCredential

    return SecretClient(emulation["keyvault_url"], DevTokenCredential.from_dir(emulation["dev_tokens_dir"]),
                        connection_verify=emulation["ca_bundle"], verify_challenge_resource=False)


@pytest.fixture
def owner_env(monkeypatch, tmp_path, azurite, emulation) -> dict:
    """What a data owner's shell has: an endpoints file (vault, dev tokens, CA, storage), a home for DEKs."""
    monkeypatch.setenv("CCR_HOME", str(tmp_path / "home"))
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({**emulation, "storage_url": azurite.blob_url}))
    return {"endpoints": str(endpoints)}


def secret_versions(secrets: SecretClient, name: str) -> list[dict]:
    return [json.loads(secrets.get_secret(name, p.version).value)
            for p in secrets.list_properties_of_secret_versions(name)]
