"""The official boto3 client against the S3 stand-in (`s3_emulation`, the session's one, in tests/conftest.py)."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config


def s3_client(endpoints: dict, access_key_id: str = "s3core-owner", secret_access_key: str = "s3core-secret"):
    return boto3.client("s3", endpoint_url=endpoints["s3_endpoint"], region_name=endpoints["s3_region"],
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
                        verify=endpoints["ca_bundle"], config=Config(s3={"addressing_style": "path"}))


@pytest.fixture
def s3(s3_emulation):
    """The bucket owner's client."""
    return s3_client(s3_emulation)


@pytest.fixture
def bucket(s3) -> str:
    name = f"s3core-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name
