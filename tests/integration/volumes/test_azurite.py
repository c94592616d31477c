from __future__ import annotations

import pytest

from sidecars.common.errors import ProcessError
from sidecars.emulators.azurite import start_azurite


def test_azurite_serves_the_blob_sdk_over_https(blob_service, container_name, azurite) -> None:
    assert azurite.blob_url.startswith("https://127.0.0.1:")
    container = blob_service.create_container(container_name)
    container.upload_blob("a/b.txt", b"hello")
    assert container.download_blob("a/b.txt").readall() == b"hello"
    assert [b.name for b in container.list_blobs()] == ["a/b.txt"]


def test_oauth_without_tls_is_refused() -> None:
    with pytest.raises(ProcessError, match="HTTPS"):
        start_azurite(oauth=True)


def test_oauth_mode_takes_bearer_tokens(local_ca, tmp_path, container_name) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobServiceClient

    from sidecars.common.devtokens import DevTokenIssuer

    credential = DevTokenIssuer.create(tmp_path / "tokens").credential("data-owner")
    with start_azurite(tls=local_ca.issue_server_cert("azurite-oauth", directory=tmp_path), oauth=True,
                       ca_file=str(local_ca.cert_file), log_path=tmp_path / "azurite.log") as az:
        service = BlobServiceClient(az.blob_url, credential=credential, connection_verify=az.ca_file)
        service.create_container(container_name).upload_blob("t.txt", b"with a token")
        assert service.get_blob_client(container_name, "t.txt").download_blob().readall() == b"with a token"
        anonymous = BlobServiceClient(az.blob_url, connection_verify=az.ca_file, retry_total=0)
        with pytest.raises(HttpResponseError):
            anonymous.get_blob_client(container_name, "t.txt").download_blob().readall()
