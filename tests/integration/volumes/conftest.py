"""A real Azurite (HTTPS, LocalCA) shared by the volumes integration tests; each test uses its own containers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from sidecars.common.tls import LocalCA
from sidecars.emulators.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("ca"))


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
def keyvault(local_ca):
    from tests.volumes_support import KeyVaultSecrets, serve_in_thread

    vault = KeyVaultSecrets()
    with serve_in_thread(vault.app, local_ca.issue_server_cert("keyvault")) as url:
        vault.url = url
        yield vault


@pytest.fixture
def owner_env(monkeypatch, tmp_path, azurite, keyvault, local_ca) -> dict:
    """What a data owner's shell has: a token for the vault, a home for DEK files, an endpoints file."""
    monkeypatch.setenv("CCR_ACCESS_TOKEN", "owner-token")
    monkeypatch.setenv("CCR_HOME", str(tmp_path / "home"))
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"storage_url": azurite.blob_url, "keyvault_url": keyvault.url,
                                     "ca_bundle": str(local_ca.cert_file)}))
    return {"endpoints": str(endpoints)}
