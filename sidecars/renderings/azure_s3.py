"""An Azure clean room access point whose store is AWS S3 (`store.type: Aws_S3`), as a ccr `S3Store`.

The Azure document describes an S3 store with the fields it has for every store: the bucket is
`store.name` (or the bucket of an `arn:aws:s3:::BUCKET` in `store.id`), the service is `provider.url`,
and the rest lives in `provider.configuration` (JSON, possibly base64, keys case-insensitive):

    region          the bucket's region (else read from an s3.REGION.amazonaws.com URL)
    prefix          the folder of the bucket the volume sees ("" = the whole bucket)
    addressing      "path" or "virtual" (or forcePathStyle / usePathStyle: true for "path")
    secret          the CGS secret holding {"access_key_id", "secret_access_key"}  (also: credentialsSecret,
                    secretName, cgsSecret)
    roleArn         or: the role the room assumes with its federated token (AssumeRoleWithWebIdentity)

Credentials are never taken from the document itself: an access key written in the configuration would
travel in the contract for every member to read, so one found there is refused, not carried over.
"""

from __future__ import annotations

import re
from typing import Any

from ..common.errors import SpecError

S3_STORE_TYPE = "Aws_S3"

#: s3.REGION.amazonaws.com, s3-REGION.amazonaws.com, BUCKET.s3.REGION.amazonaws.com (and .com.cn)
_AWS_HOST = re.compile(r"^(?:(?P<bucket>.+)\.)?s3[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_ARN_BUCKET = re.compile(r"^arn:aws[a-z-]*:s3:::(?P<bucket>[^/]+)(?:/(?P<prefix>.*))?$")
_SECRET_KEYS = ("secret", "credentialssecret", "secretname", "cgssecret")
#: What would put a long-lived key into the contract itself.
_KEY_MATERIAL = ("accesskeyid", "access_key_id", "secretaccesskey", "secret_access_key", "sessiontoken",
                 "aws_access_key_id", "aws_secret_access_key")


def _fail(path: str, problem: str) -> SpecError:
    return SpecError([f"{path}: {problem}"], "azure spec")


def _text(config: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = config.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def s3_store(store: dict[str, Any], config: dict[str, Any], path: str) -> dict[str, Any]:
    """The `S3Store` (as spec data) an `Aws_S3` store resource describes, given its provider's decoded
    configuration (keys lower-cased); one-line errors name the field."""
    provider = store.get("provider") or {}
    config_path = f"{path}.provider.configuration"
    if leaked := [k for k in config if k in _KEY_MATERIAL]:
        raise _fail(config_path, f"holds {leaked[0]!r}: an access key never travels in the contract; store it "
                                 "as a CGS secret and name the secret (\"secret\")")

    bucket, prefix = str(store.get("name") or ""), _text(config, "prefix") or ""
    if arn := _ARN_BUCKET.match(str(store.get("id") or "")):
        bucket = bucket or arn.group("bucket")
        prefix = prefix or (arn.group("prefix") or "")
    if "/" in bucket:  # "BUCKET/FOLDER": the Azure tooling names a folder of a bucket this way
        bucket, _, folder = bucket.partition("/")
        prefix = prefix or folder
    if not bucket:
        raise _fail(f"{path}.name", "names no bucket")

    url = str(provider.get("url") or "").rstrip("/")
    host = re.sub(r"^https?://", "", url).split("/")[0].split(":")[0].lower()
    aws = _AWS_HOST.match(host)
    region = _text(config, "region") or (aws.group("region") if aws else None)
    if not region:
        raise _fail(config_path, "names no region (\"region\"), and the provider URL is not an AWS S3 endpoint "
                                 "that would tell it")

    addressing = _addressing(config, config_path)
    endpoint: str | None = url or None
    if aws and aws.group("bucket"):
        # A virtual-hosted URL names the bucket in its host: the endpoint is the service, without it.
        if aws.group("bucket") != bucket:
            raise _fail(f"{path}.provider.url", f"is bucket {aws.group('bucket')!r}'s, not {bucket!r}'s")
        endpoint = None if host.endswith("amazonaws.com") else endpoint
        addressing = addressing or "virtual"
    if endpoint and aws and not aws.group("bucket") and host == f"s3.{region}.amazonaws.com":
        endpoint = None  # the default endpoint of the region: say nothing, so the spec reads as plain AWS

    result: dict[str, Any] = {"kind": "s3"}
    if endpoint:
        result["endpoint"] = endpoint
    result |= {"region": region, "bucket": bucket}
    if prefix.strip("/"):
        result["prefix"] = prefix.strip("/")
    if addressing:
        result["addressing"] = addressing
    result["credentials"] = _credentials(config, config_path)
    return result


def _addressing(config: dict[str, Any], path: str) -> str | None:
    style = _text(config, "addressing", "addressingstyle")
    if style is not None:
        if style.lower() not in ("path", "virtual"):
            raise _fail(path, f"addressing {style!r} is neither 'path' nor 'virtual'")
        return style.lower()
    for key in ("forcepathstyle", "usepathstyle"):
        if key in config:
            return "path" if config[key] in (True, "true", "True", 1) else "virtual"
    return None


def _credentials(config: dict[str, Any], path: str) -> dict[str, str]:
    secret = _text(config, *_SECRET_KEYS)
    role = _text(config, "rolearn", "role_arn", "role")
    if secret and role:
        raise _fail(path, "names both a CGS secret and a role: choose one way for the room to reach the bucket")
    if secret:
        return {"secret": secret}
    if role:
        return {"role_arn": role}
    raise _fail(path, "names no credentials: a CGS secret holding the access key pair (\"secret\") or a role "
                      "the room assumes with its federated token (\"roleArn\")")
