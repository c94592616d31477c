"""`ccr analytics dataset publish --data`: the files are checked against the document's schema, then encrypted
and uploaded by `ccr data publish`'s machinery into the spec's datasource (real Azurite, the Key Vault
stand-in), and only then is the document proposed and accepted in CGS; a file that does not match stops
everything before a byte is uploaded or a proposal made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.cli import main
from sidecars.common.tls import LocalCA
from sidecars.emulators.azurite import Azurite, start_azurite
from sidecars.governance.member_client import CgsRequestFailed
from sidecars.volumes.manifest import is_reserved
from tests.standins import running

from .test_analytics import analytics_cgs, contract, dataset, parties  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "examples/cleanroomhello-job/spec.yaml"


@pytest.fixture(scope="module")
def own_vault(tmp_path_factory) -> Iterator[dict]:
    """A Key Vault stand-in of this module's own: the example spec names fixed secrets (publisher-input-dek),
    which the volumes' owner tests publish under too, with other KEKs."""
    with running(tmp_path_factory.mktemp("emulators"), "keyvault") as endpoints:
        yield endpoints


@pytest.fixture(scope="module")
def storage(own_vault, tmp_path_factory) -> Iterator[Azurite]:  # noqa: F811
    ca = LocalCA.create(Path(own_vault["ca_bundle"]).parent)
    tls = ca.issue_server_cert("azurite-analytics")
    with start_azurite(tls=tls, ca_file=str(ca.cert_file), loose=True,
                       log_path=tmp_path_factory.mktemp("azurite") / "azurite.log") as azurite:
        yield azurite


@pytest.fixture
def owner(tmp_path, monkeypatch, storage, own_vault, local_ca, analytics_cgs) -> list[str]:  # noqa: F811
    """The connection options of a data owner whose storage, vault and CGS have different CAs (one bundle)."""
    monkeypatch.setenv("CCR_HOME", str(tmp_path / "home"))
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text(Path(own_vault["ca_bundle"]).read_text() + Path(local_ca.cert_file).read_text())
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({**own_vault, "storage_url": storage.blob_url, "ca_bundle": str(bundle),
                                     "maa_endpoint": "https://maa.example", "cgs_endpoint": analytics_cgs.url}))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kek = tmp_path / "kek.pub.pem"
    kek.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return ["--endpoints", str(endpoints), "--ca-bundle", str(bundle), "--kek", str(kek), "--spec", str(SPEC)]


def stored(storage: Azurite, container: str) -> list[str]:
    service = BlobServiceClient(storage.blob_url, credential={"account_name": storage.account_name,
                                                              "account_key": storage.account_key},
                                connection_verify=storage.ca_file)
    client = service.get_container_client(container)
    return sorted(b.name for b in client.list_blobs() if not is_reserved(b.name)) if client.exists() else []


@pytest.mark.slow  # Azurite and the Key Vault stand-in start: ~15 s
def test_publish_checks_uploads_then_proposes_and_a_mismatch_stops_it_all(parties, contract, owner, storage,  # noqa: F811
                                                                          tmp_path, capsys):
    northwind = parties["northwind"]
    document = tmp_path / "publisher-input.json"
    document.write_text(dataset("publisher-input", "northwind", store="publisher-input", container="publisher-input",
                                encryption={"mode": "CSE", "dekSecret": "publisher-input-dek",
                                            "kekName": "publisher-kek"}))
    data = tmp_path / "data"
    (data / "2024-01-01").mkdir(parents=True)
    (data / "2024-01-01" / "part-1.csv").write_text("id,amount\n1,2.5\n")
    (data / "2024-01-02").mkdir()
    (data / "2024-01-02" / "part-2.csv").write_text("id,amount,email\n2,1.0,x@y\n")
    identity = ["--identity", str(northwind.identity.directory), "--contract", contract]

    code = main(["analytics", "dataset", "publish", str(document), "--data", str(data), *owner, *identity])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "2024-01-02/part-2.csv" in err and "'email'" in err
    assert stored(storage, "publisher-input") == []
    with pytest.raises(CgsRequestFailed, match="not found"):
        northwind.contract_document(contract, "publisher-input")

    (data / "2024-01-02" / "part-2.csv").write_text("ID,Amount\n2,1.0\n")
    code = main(["analytics", "dataset", "publish", str(document), "--data", str(data), *owner, *identity])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 file(s) match the schema" in out and "published 2 file(s)" in out
    assert "dataset publisher-input: proposal" in out and "Accepted" in out
    assert stored(storage, "publisher-input") == ["2024-01-01/part-1.csv", "2024-01-02/part-2.csv"]
    assert northwind.contract_document(contract, "publisher-input")["state"] == "Accepted"
