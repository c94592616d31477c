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
