"""The analytics demo's storage variants for real (root): `analytics-s3` (woodgrove's data and results in the S3
stand-in, SSE; woodgrove's key pair a CGS secret the room reads after attestation) and `analytics-sse` (every
volume on Azure Blob, SSE) each run the demo's whole story in their own room and contract, and give sqlite's
answer. The default CSE variant is this folder's shared room (test_analytics_room.py).

In SSE the storage provider holds the clear results: the test reads them straight from storage and finds
the CSV the downloaded (manifest-checked) copy holds, as docs/storage.md says it can.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config

from examples.demo_support import LocalRoom, load_demo
from sidecars.common.azure_clients import container_client

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _stored_results(endpoints: dict, store: dict) -> dict[str, bytes]:
    """The sink's objects as the storage provider holds them (no key of ours involved)."""
    if store.get("kind") == "s3":
        s3 = boto3.client("s3", endpoint_url=endpoints["s3_endpoint"], region_name=endpoints["s3_region"],
                          aws_access_key_id="provider", aws_secret_access_key="provider",
                          verify=endpoints["ca_bundle"], config=Config(s3={"addressing_style": "path"}))
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=store["bucket"]).get("Contents", [])]
        return {k: s3.get_object(Bucket=store["bucket"], Key=k)["Body"].read() for k in keys}
    client = container_client(endpoints["storage_url"], store["container"], ca_bundle=endpoints.get("ca_bundle"))
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


@pytest.mark.parametrize("variant", ["analytics-s3", "analytics-sse"])
def test_the_variant_tells_the_story_with_sqlites_answer(stand_ins, tmp_path_factory, variant):
    demo = load_demo("analytics")
    run = tmp_path_factory.mktemp(f"s3edge-{variant}")
    where = LocalRoom(run)
    try:
        room = demo.prepare(run, stand_ins=stand_ins, variant=variant, name=f"s3edge-{variant}")
        ca = demo.contract_ca(room.spec, room.endpoints, room.members / "woodgrove", run / "contract-ca.pem")
        where.up(room.spec, room.endpoints)
        demo.wait_until_serving(room, where.address, ca)
        result_dir = demo.story(room, where, ca)  # raises SystemExit naming what differs from sqlite
    finally:
        where.leave_nothing_behind()
    downloaded = (result_dir / "spend-by-age-1" / "segment-1.csv").read_bytes()
    sink = next(v for v in yaml.safe_load(room.spec.read_text())["datasinks"] if v["name"] == demo.SINK)
    stored = _stored_results(json.loads(Path(room.endpoints).read_text()), sink["store"])
    assert stored["spend-by-age-1/segment-1.csv"] == downloaded, "SSE: the provider holds the clear result"
