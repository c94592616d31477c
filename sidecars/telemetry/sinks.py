"""Blob storage sinks, through the official azure-storage-blob SDK (Azurite locally), reached the way the
volumes are (`sidecars.common.azure_clients.container_client`: an account key when given or Azurite's
well-known one, else the identity sidecar's IMDS tokens, else the default Azure credential).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError

from ..common.azure_clients import account_name_of, container_client
from ..common.errors import RemoteServiceError
from ..common.objectformat import ObjectLocation


@dataclass(frozen=True)
class SinkLocation:
    account_url: str
    container: str

    def describe(self) -> str:
        return f"{self.account_url.rstrip('/')}/{self.container}"

    def object(self, name: str) -> ObjectLocation:
        """The place an object's encryption is bound to (its associated data)."""
        return ObjectLocation(account_name_of(self.account_url), self.container, name)


class BlobSink:
    def __init__(self, location: SinkLocation, *, account_key: str | None = None, ca_bundle: str | None = None,
                 credential: TokenCredential | None = None):
        self.location = location
        self._container = container_client(location.account_url, location.container, ca_bundle=ca_bundle,
                                           account_key=account_key, credential=credential)

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
