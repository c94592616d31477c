"""Blob storage sinks, through the official azure-storage-blob SDK (Azurite locally).

Credentials: an account key (`CCR_STORAGE_ACCOUNT_KEY`, e.g. Azurite's well-known key) when given,
otherwise the room's managed identity (the identity sidecar speaks IMDS) with the sink's client id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient

from ..common.errors import RemoteServiceError
from .objectformat import account_name

ACCOUNT_KEY_ENV = "CCR_STORAGE_ACCOUNT_KEY"


@dataclass(frozen=True)
class SinkLocation:
    account_url: str
    container: str
    client_id: str | None = None

    def describe(self) -> str:
        return f"{self.account_url.rstrip('/')}/{self.container}"


def _credential(location: SinkLocation, account_key: str | None):
    key = account_key or os.environ.get(ACCOUNT_KEY_ENV)
    if key:
        return {"account_name": account_name(location.account_url), "account_key": key}
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=location.client_id) if location.client_id \
        else ManagedIdentityCredential()


class BlobSink:
    def __init__(self, location: SinkLocation, *, account_key: str | None = None):
        self.location = location
        service = BlobServiceClient(location.account_url, credential=_credential(location, account_key),
                                    retry_total=2)
        self._container: ContainerClient = service.get_container_client(location.container)

    def ensure_container(self) -> None:
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise RemoteServiceError("storage", f"{self.location.describe()}: {_reason(exc)}") from None

    def upload(self, name: str, data: bytes) -> None:
        try:
            self._container.upload_blob(name, data, overwrite=False)
        except AzureError as exc:
            raise RemoteServiceError("storage", f"upload {name} to {self.location.describe()}: {_reason(exc)}") \
                from None

    def names(self, prefix: str = "") -> Iterator[str]:
        try:
            for blob in self._container.list_blobs(name_starts_with=prefix or None):
                yield blob.name
        except AzureError as exc:
            raise RemoteServiceError("storage", f"list {self.location.describe()}: {_reason(exc)}") from None

    def download(self, name: str) -> bytes:
        try:
            return self._container.download_blob(name).readall()
        except AzureError as exc:
            raise RemoteServiceError("storage", f"download {name}: {_reason(exc)}") from None


def _reason(exc: AzureError) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
