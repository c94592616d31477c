"""An S3 bucket (and prefix) as a volume's store (boto3): ranged GETs, multipart uploads completed last.

Names are relative to the store's prefix: object NAME is key PREFIX/NAME. A write is a multipart upload
(parts of 8 MiB: S3 wants at least 5 MiB but for the last) that nothing sees until CompleteMultipartUpload,
aborted on failure; an object of one part is one PutObject, equally all or nothing. An upload whose abort
failed too is aborted by the next session that writes (`abort_stale_uploads`).

SSE-C: the customer key (the volume's DEK, 256 bits) goes with every request that reads or writes data,
HEAD, UploadPart and CompleteMultipartUpload included, as S3 requires: SSECustomerAlgorithm AES256, the key
and its MD5 (botocore encodes the key and computes the MD5), in headers over TLS, never in a URL. S3
stores only a salted HMAC of the key. (moto does not enforce it: see sidecars/emulators/s3.py.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...common import objectformat as fmt
from ...common.errors import NotFound, RemoteServiceError
from ...common.s3_clients import SERVICE, error_text, resolved, s3_client
from ...spec import S3Store
from . import StoreAccess, StoredObject

#: The account part of a CSE object's associated data: the bucket and key follow it (an Azure storage account
#: name is 3-24 characters, so no Blob object shares these bytes).
ACCOUNT = "s3"
_MISSING = ("NoSuchKey", "404", "NotFound")


def sse_c_parameters(material: bytes | None) -> dict[str, Any]:
    if material is None:
        return {}
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": material}


def open_store(store: S3Store, access: StoreAccess, customer_key_material: bytes | None) -> S3ObjectStore:
    credentials = access.s3_credentials(store) if access.s3_credentials is not None else None
    keys = resolved(credentials, store, ca_bundle=access.ca_bundle)
    client = s3_client(store, keys, ca_bundle=access.ca_bundle, retries=access.retries)
    return S3ObjectStore(client, store, customer_key_material)


class S3ObjectStore:
    kind = "s3"
    service = SERVICE
    account = ACCOUNT
    part_segments = 128  # 8 MiB parts of 64 KiB segments; 10,000 parts allow 80 GiB objects
    # AWS's performance guidance: 8-16 MB byte-range GETs and parallel part uploads; boto3's managed transfer
    # uses 8 MiB and 10 threads. Measured on the stand-in (bench/s3_volumes.py): 4 parallel parts wrote at
    # about 60% of boto3's rate, 8 at about the same.
    upload_parallelism = 8
    read_segments = 128  # 8 MiB ranged GETs

    def __init__(self, client: Any, store: S3Store, customer_key_material: bytes | None = None):
        self.client = client
        self.store = store
        self.bucket = store.bucket
        self.container = f"{store.bucket}/{store.prefix}" if store.prefix else store.bucket
        self.sse_c = sse_c_parameters(customer_key_material)

    def location(self, name: str) -> fmt.ObjectLocation:
        return fmt.ObjectLocation(ACCOUNT, self.bucket, self.store.key_of(name))

    def _failure(self, exc: Exception, name: str | None = None, doing: str = "") -> Exception:
        """One line naming the store (and object): bucket/key: code: message."""
        where = f"s3://{self.bucket}/{self.store.key_of(name)}" if name is not None else f"s3://{self.container}"
        what = f"{doing} " if doing else ""
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return NotFound(f"S3: bucket {self.bucket} does not exist ({self.store.endpoint_url})")
            return RemoteServiceError(SERVICE, f"{what}{where}: {error_text(exc)}", status=status)
        if isinstance(exc, BotoCoreError):
            return RemoteServiceError(SERVICE, f"{what}{where}: {exc}")
        return exc

    def list(self, prefix: str | None = None) -> Iterator[StoredObject]:
        base = f"{self.store.prefix}/" if self.store.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=base + (prefix or ""))
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(base):]
                    if name and not name.endswith("/"):  # a "folder" marker is no object of ours
                        yield StoredObject(name, item["Size"], item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc, doing="listing") from None

    def get_range(self, name: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.store.key_of(name),
                                            Range=f"bytes={start}-{end - 1}", **self.sse_c)
            return answer["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise NotFound(f"object {self.location(name)} does not exist") from None
            raise self._failure(exc, name) from None
        except BotoCoreError as exc:
            raise self._failure(exc, name) from None

    def get_small(self, name: str, limit: int) -> bytes | None:
        key = self.store.key_of(name)
        try:
            size = self.client.head_object(Bucket=self.bucket, Key=key, **self.sse_c)["ContentLength"]
            if size > limit:
                raise RemoteServiceError(SERVICE, f"s3://{self.bucket}/{key} is {size} bytes, over the {limit} "
                                                  "expected")
            body = self.client.get_object(Bucket=self.bucket, Key=key, **self.sse_c)["Body"]
            # The object can change after HEAD: the limit holds for what actually comes.
            data = body.read(limit + 1)
            body.close()
            if len(data) > limit:
                raise RemoteServiceError(SERVICE, f"s3://{self.bucket}/{key} grew past the {limit} bytes expected")
            return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise self._failure(exc, name) from None
        except BotoCoreError as exc:
            raise self._failure(exc, name) from None

    def put_small(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.store.key_of(name), Body=data, **self.sse_c)
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc, name) from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.store.key_of(name))
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc, name) from None

    def upload(self, name: str, metadata: dict[str, str]) -> MultipartUpload:
        return MultipartUpload(self, name, metadata)

    def abort_stale_uploads(self, started_before: dt.datetime) -> int:
        """Abort the multipart uploads under the prefix that were initiated before `started_before` (a session's
        start, tz-aware): what an earlier session left when its own abort failed. S3 keeps,
        and bills, their parts until then. Returns how many were aborted."""
        base = f"{self.store.prefix}/" if self.store.prefix else ""
        # S3 may list `Initiated` in whole seconds: an upload of this session's first second could read as older.
        started_before = started_before.replace(microsecond=0)
        aborted = 0
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=base):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] >= started_before:
                        continue  # this session's own
                    try:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                            raise
                        continue  # completed or aborted since it was listed
                    aborted += 1
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc, doing="aborting stale uploads in") from None
        return aborted

    def ensure_container(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise self._failure(exc, doing="checking the bucket") from None
        except BotoCoreError as exc:
            raise self._failure(exc, doing="checking the bucket") from None
        where = {} if self.store.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.store.region}}
        try:
            self.client.create_bucket(Bucket=self.bucket, **where)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise self._failure(exc, doing="creating the bucket") from None
        except BotoCoreError as exc:
            raise self._failure(exc, doing="creating the bucket") from None


class MultipartUpload:
    """Parts go to one multipart upload, created with the first part; `complete` lists them in order."""

    def __init__(self, store: S3ObjectStore, name: str, metadata: dict[str, str]):
        self.store = store
        self.name = name
        self.key = store.store.key_of(name)
        self.metadata = dict(metadata)
        self._lock = threading.Lock()
        self._upload_id: str | None = None
        self._aborted = False
        self._etags: dict[int, str] = {}

    def _started(self) -> str:
        with self._lock:
            if self._aborted:
                raise RemoteServiceError(SERVICE, f"s3://{self.store.bucket}/{self.key}: the upload was aborted")
            if self._upload_id is None:
                try:
                    answer = self.store.client.create_multipart_upload(
                        Bucket=self.store.bucket, Key=self.key, Metadata=self.metadata, **self.store.sse_c)
                except (ClientError, BotoCoreError) as exc:
                    raise self.store._failure(exc, self.name, "starting the upload of") from None
                self._upload_id = answer["UploadId"]
            return self._upload_id

    def put_part(self, number: int, data: bytes) -> None:
        upload_id = self._started()
        try:
            answer = self.store.client.upload_part(Bucket=self.store.bucket, Key=self.key, UploadId=upload_id,
                                                   PartNumber=number + 1, Body=data, **self.store.sse_c)
        except (ClientError, BotoCoreError) as exc:
            raise self.store._failure(exc, self.name, f"uploading part {number + 1} of") from None
        with self._lock:
            self._etags[number] = answer["ETag"]

    def complete(self, parts: int, last: bytes, metadata: dict[str, str]) -> None:
        client, bucket = self.store.client, self.store.bucket
        if not parts:
            # One part: one PutObject, with all the metadata (a multipart upload takes it only at its start).
            try:
                client.put_object(Bucket=bucket, Key=self.key, Body=last, Metadata={**self.metadata, **metadata},
                                   **self.store.sse_c)
            except (ClientError, BotoCoreError) as exc:
                raise self.store._failure(exc, self.name, "writing") from None
            return
        try:
            if last:
                self.put_part(parts, last)
                parts += 1
            listed = [{"PartNumber": n + 1, "ETag": self._etags[n]} for n in range(parts)]
            client.complete_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self._started(),
                                             MultipartUpload={"Parts": listed}, **self.store.sse_c)
        except (ClientError, BotoCoreError) as exc:
            self.abort()
            raise self.store._failure(exc, self.name, "completing the upload of") from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the staged parts (S3 keeps, and bills, an incomplete upload's parts until it is aborted)."""
        with self._lock:
            upload_id, self._upload_id, self._aborted = self._upload_id, None, True
        if upload_id is None:
            return
        # Nothing was completed either way; should the abort itself fail (the store unreachable), the next
        # writable mount or publish aborts the upload (`abort_stale_uploads`), as a bucket lifecycle rule would.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.store.client.abort_multipart_upload(Bucket=self.store.bucket, Key=self.key, UploadId=upload_id)
