"""Publishing a dataset from the workspace: a job that checks the files, encrypts and uploads them (real
Azurite, the Key Vault stand-in) with a progress bar by bytes, then proposes and accepts the document; what
lands in storage is ciphertext under the document's container."""

from __future__ import annotations

import json
import time

import pytest
from azure.storage.blob import BlobServiceClient
from fastapi.testclient import TestClient

from sidecars.workspace.app import build_app
from sidecars.workspace.party import Party

from .test_analytics import analytics_cgs, contract, dataset, parties  # noqa: F401 - fixtures
from .test_analytics_publish import own_vault, owner, storage  # noqa: F401 - fixtures
from .workspaces import WORKSPACE_URL, Workspace

pytestmark = pytest.mark.slow  # Azurite and the Key Vault stand-in start: ~15 s


def test_publish_is_a_job_with_progress_that_uploads_ciphertext_then_proposes(
        parties, contract, owner, storage, analytics_cgs, tmp_path):  # noqa: F811
    options = dict(zip(owner[::2], owner[1::2], strict=True))
    party = Party(cgs_url=analytics_cgs.url, ca_bundle=options["--ca-bundle"],
                  identity_dir=parties["northwind"].identity.directory, mode="certificate",
                  endpoints=options["--endpoints"], kek=options["--kek"])
    party.base_url = WORKSPACE_URL
    northwind = Workspace(party, TestClient(build_app(party), base_url=WORKSPACE_URL))
    data = tmp_path / "data"
    (data / "2024-01-01").mkdir(parents=True)
    (data / "2024-01-01" / "part-1.csv").write_text("id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(20000)))
    document = json.loads(dataset("wsid-input", "northwind", store="publisher-input", container="publisher-input",
                                  encryption={"mode": "CSE", "dekSecret": "wsid-input-dek",
                                              "kekName": "publisher-kek"}))
    job = northwind.ok("POST", f"/api/collaborations/{contract}/datasets",
                       {"document": document, "data": {"folder": str(data), "spec": options["--spec"]}}, status=202)
    percents = []
    deadline = time.monotonic() + 60
    while (job := northwind.ok("GET", f"/api/jobs/{job['id']}"))["state"] == "running":
        percents.append(job["percent"])
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job["state"] == "succeeded", job
    assert job["percent"] == 100 and job["result"]["proposalState"] == "Accepted" and job["result"]["files"] == 1
    assert percents == sorted(percents)  # a progress bar never goes back
    shown = northwind.ok("GET", f"/api/collaborations/{contract}/datasets/wsid-input")
    assert shown["state"] == "Accepted" and shown["mine"]
    service = BlobServiceClient(storage.blob_url, credential={"account_name": storage.account_name,
                                                              "account_key": storage.account_key},
                                connection_verify=storage.ca_file)
    blob = service.get_container_client("publisher-input").get_blob_client("2024-01-01/part-1.csv")
    stored = blob.download_blob().readall()
    assert b"19999,19999.5" not in stored and b"id,amount" not in stored
