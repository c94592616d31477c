"""`ccr emulators start` serves S3 (moto's server mode) over TLS, listed in endpoints.json, and boto3 talks
to it: buckets, objects, ranged GETs, multipart uploads (nothing under the name before completion), STS."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, SSLError

from .conftest import s3_client


def test_endpoints_json_lists_the_s3_stand_in(s3_emulation):
    written = json.loads((Path(s3_emulation["ca_bundle"]).parents[1] / "endpoints.json").read_text())
    assert written["s3"] == {"endpoint": written["s3_endpoint"], "region": "us-east-1"}
    assert written["s3_endpoint"].startswith("https://127.0.0.1:") and written["s3_region"] == "us-east-1"


def test_boto3_puts_gets_ranges_and_multiparts(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"0123456789")
    assert s3.get_object(Bucket=bucket, Key="a/b.txt", Range="bytes=2-5")["Body"].read() == b"2345"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")
    part = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024)
    # Before CompleteMultipartUpload nothing is under the name: an interrupted upload is no object.
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="big")
    assert info.value.response["Error"]["Code"] == "404"
    s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == 1024
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["a/b.txt", "big"]


def test_the_stand_in_is_tls_only_with_the_emulation_s_ca(s3_emulation, bucket):
    client = boto3.client("s3", endpoint_url=s3_emulation["s3_endpoint"], region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y")  # the system CAs only
    with pytest.raises(SSLError):
        client.list_objects_v2(Bucket=bucket)


def test_sts_serves_assume_role_with_web_identity(s3_emulation):
    sts = boto3.client("sts", endpoint_url=s3_emulation["s3_endpoint"], region_name="us-east-1",
                       verify=s3_emulation["ca_bundle"])
    answer = sts.assume_role_with_web_identity(RoleArn="arn:aws:iam::123456789012:role/s3core-room",
                                               RoleSessionName="room", WebIdentityToken="a.b.c")
    credentials = answer["Credentials"]
    assert credentials["AccessKeyId"] and credentials["SessionToken"]
    assert s3_client(s3_emulation, credentials["AccessKeyId"], credentials["SecretAccessKey"]).list_buckets()
