"""Azure Blob storage as a volume's store (azure-storage-blob): block blobs, the block list committed last.

CPK: the customer-provided key (the volume's DEK) and its SHA-256 go with every request, reads included.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from collections.abc import Iterator

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContainerClient, CustomerProvidedEncryptionKey

from ...common import objectformat as fmt
from ...common.azure_clients import container_client
from ...common.errors import NotFound, RemoteServiceError
from ...spec import BlobStore
from . import StoreAccess, StoredObject

SERVICE = "blob storage"


def customer_key(material: bytes) -> CustomerProvidedEncryptionKey:
    return CustomerProvidedEncryptionKey(base64.b64encode(material).decode(),
                                         base64.b64encode(hashlib.sha256(material).digest()).decode())


def open_store(store: BlobStore, access: StoreAccess, customer_key_material: bytes | None) -> AzureBlobStore:
    container = container_client(str(store.account_url), store.container, ca_bundle=access.ca_bundle,
                                 account_key=access.account_key, credential=access.token_credential,
                                 retry_total=access.retries)
    return AzureBlobStore(container, customer_key_material)


class AzureBlobStore:
    kind = "azure_blob"
    service = SERVICE
    part_segments = 64  # 4 MiB blocks: 50,000 blocks per blob allow 200 GiB objects
    upload_parallelism = 4
    read_segments = 64  # 4 MiB ranged GETs

    def __init__(self, container: ContainerClient, customer_key_material: bytes | None = None):
        self.client = container
        self.account = container.account_name or ""
        self.container = container.container_name
        self.cpk = customer_key(customer_key_material) if customer_key_material is not None else None

    def location(self, name: str) -> fmt.ObjectLocation:
        return fmt.ObjectLocation(self.account, self.container, name)

    def list(self, prefix: str | None = None) -> Iterator[StoredObject]:
        try:
            for blob in self.client.list_blobs(name_starts_with=prefix):
                yield StoredObject(blob.name, blob.size, blob.last_modified.timestamp())
        except ResourceNotFoundError:
            raise NotFound(f"container {self.container} does not exist") from None
        except AzureError as exc:
            raise as_ccr(exc) from None

    def get_range(self, name: str, start: int, end: int) -> bytes:
        try:
            stream = self.client.get_blob_client(name).download_blob(
                offset=start, length=end - start, cpk=self.cpk, max_concurrency=1)
            return stream.readall()
        except ResourceNotFoundError:
            raise NotFound(f"object {name} does not exist") from None
        except AzureError as exc:
            raise as_ccr(exc) from None

    def get_small(self, name: str, limit: int) -> bytes | None:
        try:
            blob = self.client.get_blob_client(name)
            size = blob.get_blob_properties(cpk=self.cpk).size
            if size > limit:
                raise RemoteServiceError(SERVICE, f"{name} is {size} bytes, over the {limit} expected")
            # The blob can change after its properties were read: the limit holds for what actually comes.
            data = bytearray()
            for chunk in blob.download_blob(cpk=self.cpk, max_concurrency=1).chunks():
                data += chunk
                if len(data) > limit:
                    raise RemoteServiceError(SERVICE, f"{name} grew past the {limit} bytes expected")
            return bytes(data)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise as_ccr(exc) from None

    def put_small(self, name: str, data: bytes) -> None:
        try:
            self.client.upload_blob(name, data, overwrite=True, cpk=self.cpk)
        except AzureError as exc:
            raise as_ccr(exc) from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_blob(name)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise as_ccr(exc) from None

    def upload(self, name: str, metadata: dict[str, str]) -> BlockUpload:
        return BlockUpload(self, name, metadata)

    def abort_stale_uploads(self, started_before: dt.datetime) -> int:
        # Azure discards a blob's uncommitted blocks itself (a week after they were staged): nothing to do.
        return 0

    def ensure_container(self) -> None:
        try:
            self.client.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise RemoteServiceError(SERVICE, f"creating container: {_message(exc)}",
                                     status=getattr(exc, "status_code", None)) from None


class BlockUpload:
    """Blocks staged under ids unique to this upload; the block list committed in `complete`."""

    def __init__(self, store: AzureBlobStore, name: str, metadata: dict[str, str]):
        self.store = store
        self.blob = store.client.get_blob_client(name)
        self.metadata = dict(metadata)
        self._upload_id = os.urandom(8).hex()

    def _block_id(self, number: int) -> str:
        return base64.b64encode(f"{self._upload_id}-{number:08d}".encode()).decode()

    def put_part(self, number: int, data: bytes) -> None:
        try:
            self.blob.stage_block(self._block_id(number), data, length=len(data), cpk=self.store.cpk)
        except AzureError as exc:
            raise as_ccr(exc) from None

    def complete(self, parts: int, last: bytes, metadata: dict[str, str]) -> None:
        if last or not parts:
            self.put_part(parts, last)
            parts += 1
        try:
            self.blob.commit_block_list([BlobBlock(block_id=self._block_id(n)) for n in range(parts)],
                                        metadata={**self.metadata, **metadata}, cpk=self.store.cpk)
        except AzureError as exc:
            raise as_ccr(exc) from None

    def abort(self) -> None:
        # Uncommitted blocks are not part of any blob; storage drops them after a week.
        pass


def _message(exc: AzureError) -> str:
    return (exc.message or str(exc) or type(exc).__name__).splitlines()[0]


def as_ccr(exc: BaseException) -> Exception:
    """Storage failures (HTTP errors, unreachable service) as RemoteServiceError."""
    if isinstance(exc, AzureError):
        return RemoteServiceError(SERVICE, _message(exc), status=getattr(exc, "status_code", None))
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
