"""The S3 stand-in as `ccr emulators start` runs it (moto's server over TLS from the emulation's CA), and the
official boto3 client against it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config


@pytest.fixture(scope="session")
def s3_emulation(tmp_path_factory) -> Iterator[dict]:
    from sidecars.emulators import runner

    run_dir = tmp_path_factory.mktemp("s3core-emulators")
    endpoints = runner.start(run_dir, registry=[e for e in runner.REGISTRY if e.name == "s3"])
    try:
        yield endpoints
    finally:
        runner.stop(run_dir)


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
