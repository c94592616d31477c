"""S3 stores in the spec: each hostile value is refused at load with one line naming the field, and a valid
S3 store reads back from the resolved spec (CCR_SPEC) as the same store."""

from __future__ import annotations

import copy

import pytest
import yaml

from sidecars.common.errors import SpecError
from sidecars.spec import BlobStore, EncryptionMode, S3Store, parse_spec

LOCAL = {
    "cgs_endpoint": "https://127.0.0.1:9001",
    "maa_endpoint": "https://127.0.0.1:9002",
    "keyvault_url": "https://127.0.0.1:9003",
    "storage_url": "https://127.0.0.1:9004/devstoreaccount1",
}
S3 = {"kind": "s3", "endpoint": "https://127.0.0.1:9005", "region": "us-east-1", "bucket": "publisher-input",
      "addressing": "path", "credentials": {"secret": "publisher-s3"}}


def job_data(repo, store: dict | None = None, mode: str | None = None) -> dict:
    data = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    if store is not None:
        data["datasources"][0]["store"] = copy.deepcopy(store)
    if mode is not None:
        data["datasources"][0]["encryption"]["mode"] = mode
    return data


def problems_of(data) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, variables=LOCAL)
    return info.value.problems


def s3_with(**changes) -> dict:
    store = copy.deepcopy(S3)
    for name, value in changes.items():
        if value is None:
            store.pop(name, None)
        else:
            store[name] = value
    return store


def test_an_s3_store_loads_and_reads_back_from_the_resolved_spec(repo):
    spec = parse_spec(job_data(repo, s3_with(prefix="/2026/q4/"), "SSE-C"), variables=LOCAL)
    store = spec.datasources[0].store
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.endpoint_url) == ("publisher-input", "2026/q4", "https://127.0.0.1:9005")
    assert store.key_of("part-0.csv") == "2026/q4/part-0.csv"
    assert spec.datasources[0].encryption.mode is EncryptionMode.SSE_C
    again = parse_spec(yaml.safe_load(spec.canonical_json()))
    assert again == spec and again.canonical_json() == spec.canonical_json()


def test_the_default_endpoint_is_the_region_s_aws_service(repo):
    store = parse_spec(job_data(repo, s3_with(endpoint=None, addressing=None)), variables=LOCAL).datasources[0].store
    assert store.endpoint_url == "https://s3.us-east-1.amazonaws.com" and store.addressing == "virtual"


def test_a_spec_without_kind_is_an_azure_blob_store_and_its_resolved_spec_does_not_change(repo):
    spec = parse_spec(job_data(repo), variables=LOCAL)
    assert all(isinstance(v.store, BlobStore) and v.store.kind == "azure_blob" for v in spec.datasources)
    assert '"kind"' not in spec.canonical_json()  # HOST_DATA of every existing spec is unchanged


@pytest.mark.parametrize(("bucket", "why"), [
    ("ab", "should match pattern"),
    ("Publisher", "should match pattern"),
    ("pub_input", "should match pattern"),
    ("-pub", "should match pattern"),
    ("pub..input", "no two adjacent dots"),
    ("pub.-input", "no two adjacent dots"),
    ("192.168.5.4", "not an IP address"),
    ("xn--pub", "reserved prefixes"),
    ("sthree-pub", "reserved prefixes"),
    ("pub-s3alias", "reserved prefixes"),
    ("pub--ol-s3", "reserved prefixes"),
    ("a" * 64, "should match pattern"),
])
def test_bucket_names_outside_s3_s_rules_are_refused(repo, bucket, why):
    problems = problems_of(job_data(repo, s3_with(bucket=bucket)))
    assert len(problems) == 1, problems
    assert problems[0].startswith("datasources[0].store.bucket:") and why in problems[0], problems


@pytest.mark.parametrize("prefix", ["../other-party", "data/../../x", "a/./b", "a//b", "a/..", "a\\..\\b", "a\nb",
                                    "a\x00b", "x" * 513])
def test_prefixes_that_would_name_another_place_are_refused(repo, prefix):
    problems = problems_of(job_data(repo, s3_with(prefix=prefix)))
    assert len(problems) == 1 and problems[0].startswith("datasources[0].store.prefix:"), problems


@pytest.mark.parametrize(("endpoint", "why"), [
    ("http://127.0.0.1:9005", "URL scheme should be 'https'"),
    ("http://localhost:9005", "URL scheme should be 'https'"),
    ("https://user:pass@s3.example.com", "origin only"),
    ("https://s3.example.com/other-bucket", "origin only"),
    ("https://s3.example.com/?x-id=1", "origin only"),
])
def test_endpoints_that_are_not_an_https_origin_are_refused(repo, endpoint, why):
    problems = problems_of(job_data(repo, s3_with(endpoint=endpoint, addressing="path")))
    assert len(problems) == 1, problems
    assert problems[0].startswith("datasources[0].store.endpoint:") and why in problems[0], problems


@pytest.mark.parametrize(("endpoint", "bucket"), [("https://127.0.0.1:9005", "pub"), ("https://localhost:9005", "pub"),
                                                  (None, "pub.input")])
def test_virtual_addressing_where_it_cannot_work_is_refused(repo, endpoint, bucket):
    problems = problems_of(job_data(repo, s3_with(endpoint=endpoint, bucket=bucket, addressing="virtual")))
    assert len(problems) == 1 and "addressing: virtual" in problems[0] and "use addressing: path" in problems[0]


def test_cpk_on_s3_and_sse_c_on_blob_are_refused_naming_the_field(repo):
    assert problems_of(job_data(repo, S3, "CPK")) == [
        "datasources[0].encryption.mode: CPK is not offered by a store of kind s3 (it offers CSE, SSE-C, SSE; CPK is "
        "Azure Blob's customer-provided key, SSE-C is S3's)"]
    problems = problems_of(job_data(repo, None, "SSE-C"))
    assert problems == ["datasources[0].encryption.mode: SSE-C is not offered by a store of kind azure_blob (it offers "
                        "CSE, CPK, SSE; CPK is Azure Blob's customer-provided key, SSE-C is S3's)"]


def test_sse_c_needs_a_key_and_sse_on_s3_takes_none(repo):
    data = job_data(repo, S3, "SSE-C")
    del data["datasources"][0]["encryption"]["key"]
    assert problems_of(data) == ["datasources[0].encryption: mode SSE-C needs a key reference (encryption.key)"]
    data["datasources"][0]["encryption"]["mode"] = "SSE"
    assert parse_spec(data, variables=LOCAL).datasources[0].encryption.key is None


@pytest.mark.parametrize(("credentials", "where"), [
    (None, "datasources[0].store.credentials: Field required"),
    ({}, "datasources[0].store.credentials: give exactly one of secret"),
    ({"secret": "s", "role_arn": "arn:aws:iam::123456789012:role/room"},
     "datasources[0].store.credentials: give exactly one of secret"),
    ({"access_key_id": "AKIA", "secret_access_key": "x"},
     "datasources[0].store.credentials.access_key_id: unknown field"),
    ({"secret": "Not A Name"}, "datasources[0].store.credentials.secret: String should match pattern"),
    ({"secret": "../secrets/x"}, "datasources[0].store.credentials.secret: String should match pattern"),
    ({"role_arn": "arn:aws:iam::123:role/room"}, "datasources[0].store.credentials.role_arn: String should match"),
    ({"role_arn": "arn:aws:iam::123456789012:user/alice"}, "datasources[0].store.credentials.role_arn: String should"),
])
def test_credentials_are_a_secret_s_name_or_a_role_never_a_key(repo, credentials, where):
    problems = problems_of(job_data(repo, s3_with(credentials=credentials)))
    assert any(p.startswith(where) for p in problems), problems


def test_an_unknown_store_kind_is_one_line(repo):
    assert problems_of(job_data(repo, s3_with(kind="gcs"))) == [
        "datasources[0].store: kind must be azure_blob (the default) or s3"]
    assert problems_of(job_data(repo, s3_with(region="Mars")))[0].startswith("datasources[0].store.region:")


def test_sinks_take_s3_stores_and_stay_client_side(repo):
    data = job_data(repo)
    data["telemetry"] = {"log_sink": {"store": s3_with(bucket="consumer-logs"),
                                      "encryption": data["datasinks"][0]["encryption"]}}
    spec = parse_spec(data, variables=LOCAL)
    assert isinstance(spec.telemetry.log_sink.store, S3Store)
    data["telemetry"]["log_sink"]["encryption"] = {**data["datasinks"][0]["encryption"], "mode": "SSE-C"}
    assert any(p.startswith("telemetry.log_sink.encryption.mode: must be CSE") for p in problems_of(data))
