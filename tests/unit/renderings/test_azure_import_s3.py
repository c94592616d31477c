"""The Azure importer maps an access point whose store is AWS S3 (`Aws_S3`) to a ccr S3Store instead of
refusing it; what it cannot carry safely (an access key in the contract) it refuses with one line."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecars.common.errors import SpecError
from sidecars.renderings.azure_spec import import_azure_spec, validate_import

AZURE_SPEC = Path(__file__).parent / "data" / "azure-cleanroom-spec.yaml"


def _s3_access_point(name: str, *, read_only: bool, configuration: dict[str, Any] | str, mode: str,
                     url: str = "https://s3.eu-west-1.amazonaws.com", bucket: str = "northwind-sales",
                     with_keys: bool = False) -> dict[str, Any]:
    config = configuration if isinstance(configuration, str) else json.dumps(configuration)
    ap: dict[str, Any] = {
        "name": name, "type": "Volume_ReadOnly" if read_only else "Volume_ReadWrite", "path": f"/mnt/remote/{name}",
        "store": {"name": bucket, "type": "Aws_S3", "id": f"arn:aws:s3:::{bucket}",
                  "provider": {"protocol": "Aws_S3", "url": url, "configuration": config}},
        "protection": {"proxyType": "SecureVolume__ReadOnly__Aws__S3", "proxyMode": "Secure",
                       "configuration": json.dumps({"EncryptionMode": mode})},
    }
    if with_keys:
        vault = {"type": "AzureKeyVault", "id": "kv",
                 "provider": {"protocol": "AzureKeyVault_Secret", "url": "https://northwind-kv.vault.azure.net/"}}
        ap["protection"]["encryptionSecrets"] = {
            "dek": {"name": f"{name}-dek", "secret": {"secretType": "Key",
                                                      "backingResource": {**vault, "name": f"{name}-dek"}}},
            "kek": {"name": "northwind-kek", "secret": {"secretType": "Key",
                                                        "backingResource": {**vault, "name": "northwind-kek"}}},
        }
    return ap


def _write(tmp_path: Path, *, sources: list[dict[str, Any]] = (), sinks: list[dict[str, Any]] = ()) -> Path:
    doc = yaml.safe_load(AZURE_SPEC.read_text())
    doc["datasources"] += list(sources)
    doc["datasinks"] += list(sinks)
    path = tmp_path / "azure.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_s3_access_points_become_s3_stores_in_every_mode(tmp_path):
    sse = _s3_access_point("sales", read_only=True, mode="SSE",
                           configuration={"region": "eu-west-1", "secret": "northwind-aws", "prefix": "2026/q4/"})
    sse_c = _s3_access_point("returns", read_only=True, mode="SSE-C", with_keys=True,
                             url="https://minio.northwind.test:9000", bucket="returns",
                             configuration=base64.b64encode(json.dumps(
                                 {"Region": "us-east-1", "ForcePathStyle": True, "CredentialsSecret": "nw-aws"}
                             ).encode()).decode())
    cse = _s3_access_point("results", read_only=False, mode="CSE", with_keys=True, bucket="results",
                           url="https://results.s3.eu-west-1.amazonaws.com",
                           configuration={"roleArn": "arn:aws:iam::123456789012:role/clean-room-writer"})
    imported = import_azure_spec(_write(tmp_path, sources=[sse, sse_c], sinks=[cse]))
    spec = validate_import(imported)

    sales = spec.volume("sales")
    assert (sales.store.kind, sales.store.bucket, sales.store.region, sales.store.prefix) == \
        ("s3", "northwind-sales", "eu-west-1", "2026/q4")
    assert sales.store.endpoint is None, "the region's default AWS endpoint is left implicit"
    assert sales.store.credentials.secret == "northwind-aws" and sales.store.credentials.role_arn is None
    assert sales.encryption.mode.value == "SSE" and sales.encryption.key is None

    returns = spec.volume("returns")
    assert str(returns.store.endpoint) == "https://minio.northwind.test:9000/"
    assert (returns.store.addressing, returns.store.region) == ("path", "us-east-1"), "base64 configuration decoded"
    assert returns.store.credentials.secret == "nw-aws"
    assert returns.encryption.mode.value == "SSE-C" and returns.encryption.key.kek_name == "northwind-kek"

    results = spec.volume("results")
    assert (results.store.bucket, results.store.region, results.store.addressing) == ("results", "eu-west-1", "virtual")
    assert results.store.endpoint is None, "a virtual-hosted AWS URL names the bucket, not a service"
    assert results.store.credentials.role_arn == "arn:aws:iam::123456789012:role/clean-room-writer"
    assert results.encryption.mode.value == "CSE"
    # The Blob access points of the same contract are unchanged.
    assert spec.volume("publisher-input").store.kind == "azure_blob"


def test_an_s3_telemetry_sink_is_carried_when_client_side_encrypted(tmp_path):
    doc = yaml.safe_load(AZURE_SPEC.read_text())
    traces = _s3_access_point("traces", read_only=False, mode="CSE", with_keys=True, bucket="infra-traces",
                              configuration={"region": "eu-west-1", "secret": "consumer-aws"})
    doc["governance"]["telemetry"]["infrastructure"]["traces"] = traces
    path = tmp_path / "azure.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec = validate_import(import_azure_spec(path))
    sink = spec.telemetry.telemetry_sink
    assert (sink.store.kind, sink.store.bucket, sink.store.credentials.secret) == ("s3", "infra-traces", "consumer-aws")


@pytest.mark.parametrize("configuration, problem", [
    ({"region": "eu-west-1", "secret": "s", "accessKeyId": "AKIAIOSFODNN7EXAMPLE"},
     r"holds 'accesskeyid': an access key never travels in the contract"),
    ({"region": "eu-west-1", "secret_access_key": "wJalrXUtnFEMI/K7MDENG"}, r"holds 'secret_access_key'"),
    ({"region": "eu-west-1"}, r"names no credentials"),
    ({"region": "eu-west-1", "secret": "s", "roleArn": "arn:aws:iam::123456789012:role/r"}, r"names both"),
    ({"secret": "s"}, r"names no region"),
    ({"region": "eu-west-1", "secret": "s", "addressing": "dns"}, r"addressing 'dns' is neither"),
])
def test_an_s3_store_the_room_cannot_use_safely_is_one_line(tmp_path, configuration, problem):
    ap = _s3_access_point("sales", read_only=True, mode="SSE", configuration=configuration,
                          url="https://storage.northwind.test")
    with pytest.raises(SpecError, match=problem) as caught:
        import_azure_spec(_write(tmp_path, sources=[ap]))
    message = str(caught.value)
    assert "\n" not in message and "datasources[1].store" in message
    assert "wJalrXUtnFEMI" not in message and "AKIAIOSFODNN7EXAMPLE" not in message, "the key is never echoed"


def test_a_virtual_hosted_url_of_another_bucket_is_refused(tmp_path):
    ap = _s3_access_point("sales", read_only=True, mode="SSE", url="https://other.s3.eu-west-1.amazonaws.com",
                          configuration={"secret": "s"})
    with pytest.raises(SpecError, match=r"provider.url: is bucket 'other''s, not 'northwind-sales''s"):
        import_azure_spec(_write(tmp_path, sources=[ap]))


@pytest.mark.parametrize("mode, problem", [("CPK", "CPK is not offered by a store of kind s3"),
                                           ("SSE-X", "encryption mode 'SSE-X' is not one of CSE, CPK, SSE-C, SSE")])
def test_a_mode_s3_does_not_offer_is_refused(tmp_path, mode, problem):
    ap = _s3_access_point("sales", read_only=True, mode=mode, with_keys=True,
                          configuration={"region": "eu-west-1", "secret": "s"})
    with pytest.raises(SpecError, match=problem):
        validate_import(import_azure_spec(_write(tmp_path, sources=[ap])))
