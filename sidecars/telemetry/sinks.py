"""Telemetry and log sinks: Azure Blob containers, through the official azure-storage-blob SDK (Azurite
locally), reached the way the volumes are (`sidecars.common.azure_clients.container_client`: an account key
when given or Azurite's well-known one, else the identity sidecar's IMDS tokens, else the default Azure
credential); and S3 buckets, through boto3 with the credentials the sink's store names (tests: moto's server).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from botocore.exceptions import BotoCoreError, ClientError

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


#: An S3 object's place, in the associated data every segment key is derived from: the "account" part is "s3",
#: which no Azure storage account can be named (3-24 characters), so no Blob place equals an S3 one; then the
#: bucket and the full key (prefix included): the same place the volumes' S3 store (volumes/stores/s3.py) binds.
S3_ACCOUNT = "s3"


@dataclass(frozen=True)
class S3SinkLocation:
    endpoint: str
    region: str
    bucket: str
    prefix: str = ""
    addressing: str = "virtual"

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def object(self, name: str) -> ObjectLocation:
        return ObjectLocation(S3_ACCOUNT, self.bucket, self.key(name))


class S3Sink:
    """A sink in an S3 bucket, through boto3. The bucket is its owner's: the room never creates one, and a
    missing bucket is an error naming it. Each object is one PUT (S3 makes an object visible only once all of
    it arrived) that refuses to replace an existing object, as the Blob sink does."""

    def __init__(self, location: S3SinkLocation, client: Any):
        self.location = location
        self._client = client

    def ensure_container(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.location.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise RemoteServiceError("storage", f"{self.location.describe()}: {_s3_reason(exc)}") from None

    def upload(self, name: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.location.bucket, Key=self.location.key(name), Body=data,
                                    IfNoneMatch="*")
        except (ClientError, BotoCoreError) as exc:
            raise RemoteServiceError("storage", f"upload {name} to {self.location.describe()}: "
                                                f"{_s3_reason(exc)}") from None

    def names(self, prefix: str = "") -> Iterator[str]:
        under = self.location.key(prefix) if prefix else (f"{self.location.prefix}/" if self.location.prefix else "")
        strip = len(self.location.prefix) + 1 if self.location.prefix else 0
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.location.bucket,
                                                                           Prefix=under)
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]
        except (ClientError, BotoCoreError) as exc:
            raise RemoteServiceError("storage", f"list {self.location.describe()}: {_s3_reason(exc)}") from None

    def download(self, name: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.location.bucket, Key=self.location.key(name))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise RemoteServiceError("storage", f"download {name} from {self.location.describe()}: "
                                                f"{_s3_reason(exc)}") from None


def _s3_reason(exc: Exception) -> str:
    """One line from an S3 error; never the request's URL or headers (they may carry a signature)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        known = {"404": "the bucket does not exist", "NoSuchBucket": "the bucket does not exist",
                 "403": "access denied (wrong credentials, or none allowed on the bucket)",
                 "AccessDenied": "access denied", "InvalidAccessKeyId": "the access key is not known to the service",
                 "SignatureDoesNotMatch": "the secret access key is wrong",
                 "PreconditionFailed": "an object of that name exists already", "NoSuchKey": "no such object"}
        return known.get(code) or f"{code}: {error.get('Message', '')}".strip(": ")
    return type(exc).__name__


#: What telemetry and log sinks are: one of the kinds above.
Sink = BlobSink | S3Sink
SinkPlace = SinkLocation | S3SinkLocation
