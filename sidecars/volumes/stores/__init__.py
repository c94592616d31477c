"""Object stores behind a volume: one backend module per store kind, one small protocol, one registry.

A backend knows how to list, read byte ranges of, write and delete the objects of one container (Azure
Blob) or bucket and prefix (S3), and nothing of encryption modes beyond sending the customer key its
service wants (CPK, SSE-C): the Tink format, manifests and the filesystem are the same over every kind.
A write is an `Upload`: parts staged (in parallel) and committed only by `complete`, so nothing is visible
under the name until then, and `abort` leaves nothing behind (should the abort itself fail, the next session
that writes drops what is left: `abort_stale_uploads`). A new store kind is one module here and one
entry in `BACKENDS`.

Every error a backend raises is a `RemoteServiceError` (or `NotFound`) naming the store and the object.

`BACKENDS` names each kind's module, imported when a store of that kind is opened: a room without S3
volumes never loads boto3 (the sidecars' runtime image carries only what the runtime needs).
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ...common import objectformat as fmt
from ...common.s3_credentials import S3KeyPair, WebIdentity
from ...spec import BlobStore, S3Store

#: store kind → the module whose `open_store(store, access, customer_key)` opens one
BACKENDS = {
    "azure_blob": "sidecars.volumes.stores.azure_blob",
    "s3": "sidecars.volumes.stores.s3",
}


@dataclass(frozen=True)
class StoreAccess:
    """How a store is reached; each kind reads the fields it needs."""

    ca_bundle: str | None = None
    #: retries per request (None: the backend's default)
    retries: int | None = None
    #: Azure Blob: a shared key (Azurite, an owner's), else `token_credential`
    account_key: str | None = None
    token_credential: Any = None
    #: S3: the room's credentials for the store (None: boto3's own chain, for the owner's commands)
    s3_credentials: Callable[[S3Store], S3KeyPair | WebIdentity] | None = None


def open_store(store: BlobStore | S3Store, access: StoreAccess, customer_key: bytes | None) -> ObjectStore:
    """The backend for `store` (its kind's module in BACKENDS), sending `customer_key` for CPK or SSE-C."""
    module = importlib.import_module(BACKENDS[store.kind])
    return module.open_store(store, access, customer_key)


@dataclass(frozen=True)
class StoredObject:
    name: str
    stored_size: int
    last_modified: float


class Upload(Protocol):
    """One object being written: parts numbered from 0 in order, staged from any thread."""

    def put_part(self, number: int, data: bytes) -> None: ...

    def complete(self, parts: int, last: bytes, metadata: dict[str, str]) -> None:
        """After parts 0..parts-1 were staged: stage `last` (possibly empty) as the final part and commit them
        all in order."""

    def abort(self) -> None: ...


class ObjectStore(Protocol):
    #: the spec's store kind (spec.MODES_OF_STORE says which modes it offers)
    kind: str
    #: names the service in errors: "blob storage", "S3"
    service: str
    #: the account part of a CSE object's associated data ("s3" for S3: no Azure account name is that short)
    account: str
    #: the container, or the bucket (with its prefix): what manifests and messages name
    container: str
    #: the size of a staged part, in CSE segments (S3 wants parts of at least 5 MiB)
    part_segments: int
    #: parts staged at once by one writer
    upload_parallelism: int
    #: the segments one sequential read-ahead GET covers
    read_segments: int

    def location(self, name: str) -> fmt.ObjectLocation: ...

    def list(self, prefix: str | None = None) -> Iterator[StoredObject]: ...

    def get_range(self, name: str, start: int, end: int) -> bytes: ...

    def get_small(self, name: str, limit: int) -> bytes | None: ...

    def put_small(self, name: str, data: bytes) -> None: ...

    def delete(self, name: str) -> None: ...

    def upload(self, name: str, metadata: dict[str, str]) -> Upload:
        """`metadata` known at the start (S3 takes it only then; Blob also takes what `complete` adds)."""

    def abort_stale_uploads(self, started_before: dt.datetime) -> int:
        """Drop what uploads begun before `started_before` (an earlier session's, whose `abort` failed) left
        staged, where the service keeps it (S3's incomplete multipart uploads); returns how many."""

    def ensure_container(self) -> None:
        """Create the container or bucket if it does not exist (the owner's publish)."""
