"""boto3 clients for a spec's S3 store (shared by volumes and telemetry); the credentials they sign with are
`sidecars.common.s3_credentials`'.

botocore logs every request's headers at DEBUG, SSE-C's customer key among them: its loggers are held at
WARNING here, whatever the root logger's level, so neither a key pair nor a customer key reaches a log.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..spec import S3Store
from .errors import RemoteServiceError
from .s3_credentials import S3KeyPair, WebIdentity

SERVICE = "S3"
#: Retries of one request that got no answer or a throttling/5xx answer (botocore's standard mode).
S3_RETRIES = 3

for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def client_config(store: S3Store, *, retries: int | None = None, pool: int = 16) -> Config:
    return Config(region_name=store.region, s3={"addressing_style": store.addressing},
                  retries={"max_attempts": 1 + (S3_RETRIES if retries is None else retries), "mode": "standard"},
                  connect_timeout=10, read_timeout=60, max_pool_connections=pool,
                  # SigV4 on every request; nothing signed into a URL (no presigned query strings).
                  signature_version="s3v4")


def s3_client(store: S3Store, credentials: S3KeyPair | None, *, ca_bundle: str | None = None,
              retries: int | None = None) -> Any:
    """A client of the store's service; `credentials` None: boto3's own chain (the owner's shell)."""
    keys: dict[str, str | None] = {}
    if credentials is not None:
        keys = {"aws_access_key_id": credentials.access_key_id,
                "aws_secret_access_key": credentials.secret_access_key,
                "aws_session_token": credentials.session_token}
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=store.endpoint_url, verify=ca_bundle or True,
                          config=client_config(store, retries=retries), **keys)


def sts_endpoint(store: S3Store) -> str:
    """AWS's regional STS for an AWS store; the store's own endpoint for another S3-compatible service (moto,
    MinIO serve STS beside S3)."""
    return store.endpoint_url if store.endpoint is not None else f"https://sts.{store.region}.amazonaws.com"


def assume_role(store: S3Store, web_identity_token: str, *, ca_bundle: str | None = None,
                session_name: str = "ccr-room") -> S3KeyPair:
    """AssumeRoleWithWebIdentity (unsigned: the token is the proof) for the store's role."""
    assert store.credentials.role_arn is not None
    sts = boto3.session.Session().client("sts", endpoint_url=sts_endpoint(store), region_name=store.region,
                                         verify=ca_bundle or True, config=Config(signature_version=UNSIGNED))
    try:
        answer = sts.assume_role_with_web_identity(RoleArn=store.credentials.role_arn,
                                                   RoleSessionName=session_name, WebIdentityToken=web_identity_token)
    except ClientError as exc:
        raise RemoteServiceError("STS", f"assuming {store.credentials.role_arn}: {error_text(exc)}",
                                 status=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")) from None
    except BotoCoreError as exc:
        raise RemoteServiceError("STS", f"{sts_endpoint(store)}: {exc}") from None
    credentials = answer["Credentials"]
    return S3KeyPair(credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"])


def error_text(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "Error"), error.get("Message") or ""
    return f"{code}: {message}".rstrip(": ").splitlines()[0] if message else str(code)



def resolved(credentials: S3KeyPair | WebIdentity | None, store: S3Store, *,
             ca_bundle: str | None = None) -> S3KeyPair | None:
    """A key pair to sign with: a web identity is exchanged for the store's role first."""
    if isinstance(credentials, WebIdentity):
        return assume_role(store, credentials.token, ca_bundle=ca_bundle)
    return credentials
