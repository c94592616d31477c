"""The analytics demo's three storage variants (examples/analytics/variants.py): each spec loads with the
stores and modes its name promises, its dataset documents match its datasources, and `ccr analytics dataset
publish` checks a document against an S3 datasource (its bucket) before touching storage or CGS."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from sidecars.analytics.documents import parse_dataset
from sidecars.cli import main
from sidecars.spec import EncryptionMode, parse_spec

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "analytics"
VARIABLES = {"cgs_endpoint": "https://127.0.0.1:9001", "maa_endpoint": "https://127.0.0.1:9002",
             "keyvault_url": "https://127.0.0.1:9003", "storage_url": "https://127.0.0.1:9004/devstoreaccount1",
             "s3_endpoint": "https://127.0.0.1:9005", "s3_region": "us-east-1"}


def _variants():
    spec = importlib.util.spec_from_file_location("analytics_variants", EXAMPLE / "variants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


variants = _variants()
BASE = yaml.safe_load((EXAMPLE / "spec.yaml").read_text())


def stores(variant: str) -> dict[str, tuple[str, EncryptionMode]]:
    spec = parse_spec(variants.variant_spec(BASE, variant), variables=VARIABLES)
    return {v.name: (v.store.kind, v.encryption.mode) for _, v in spec.volumes_with_location()}


def test_each_variant_stores_the_data_as_its_name_says():
    assert stores("analytics") == {"northwind-input": ("azure_blob", EncryptionMode.CSE),
                                   "woodgrove-input": ("azure_blob", EncryptionMode.CSE),
                                   "woodgrove-output": ("azure_blob", EncryptionMode.CSE)}
    assert stores("analytics-s3") == {"northwind-input": ("azure_blob", EncryptionMode.CSE),
                                      "woodgrove-input": ("s3", EncryptionMode.SSE),
                                      "woodgrove-output": ("s3", EncryptionMode.SSE)}
    assert stores("analytics-sse") == {name: ("azure_blob", EncryptionMode.SSE)
                                       for name in ("northwind-input", "woodgrove-input", "woodgrove-output")}


def test_the_s3_variant_names_a_cgs_secret_never_a_key():
    data = variants.variant_spec(BASE, "analytics-s3")
    spec = parse_spec(data, variables=VARIABLES)
    store = spec.volume("woodgrove-input").store
    assert store.credentials.secret == f"woodgrove_{variants.AWS_SECRET}" and store.addressing == "path"
    named = variants.variant_spec(BASE, "analytics-s3", woodgrove_member_id="3f2a9c", name="s3edge-x")
    assert named["datasources"][1]["store"]["credentials"] == {"secret": "3f2a9c_woodgrove-aws"}
    # Another room name: its own contract, containers and buckets, apart from the default room's.
    assert (named["name"], named["contract"]["id"]) == ("s3edge-x", "collab-s3edge-x")
    assert [named["datasources"][0]["store"]["container"], named["datasources"][1]["store"]["bucket"],
            named["datasinks"][0]["store"]["bucket"]] == ["s3edge-x-northwind-input", "s3edge-x-woodgrove-input",
                                                          "s3edge-x-woodgrove-output"]
    text = yaml.safe_dump(data).lower()
    assert "access_key" not in text and "secret_access" not in text


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="no analytics variant 'analytics-gcs'"):
        variants.variant_spec(BASE, "analytics-gcs")


@pytest.mark.parametrize("variant", variants.VARIANTS)
def test_each_variants_dataset_documents_match_its_datasources(tmp_path, variant):
    data = variants.variant_spec(BASE, variant)
    spec = parse_spec(data, variables=VARIABLES)
    out = variants.write_documents(EXAMPLE / "documents", data, tmp_path / "documents")
    for path in sorted(out.glob("*.dataset.json")):
        dataset = parse_dataset(path.read_text())
        volume = spec.volume(dataset.store)
        assert dataset.encryption.mode == volume.encryption.mode.value
        held_in = volume.store.bucket if volume.store.kind == "s3" else volume.store.container
        assert dataset.container == held_in
    queries = sorted(p.name for p in out.glob("*.query.json"))
    assert queries == sorted(p.name for p in (EXAMPLE / "documents").glob("*.query.json"))


def test_rooms_sharing_a_governance_service_get_their_own_document_ids(tmp_path):
    # CGS document ids are global: a second room's datasets (and the queries reading them) need their own.
    data = variants.variant_spec(BASE, "analytics-sse", name="s3edge-x")
    out = variants.write_documents(EXAMPLE / "documents", data, tmp_path / "documents", prefix="s3edge-x-")
    names = sorted(parse_dataset(p.read_text()).name for p in out.glob("*.dataset.json"))
    assert names == ["s3edge-x-northwind-sales", "s3edge-x-northwind-sales-dp", "s3edge-x-woodgrove-customers"]
    for path in out.glob("*.query.json"):
        assert all(d["datasetName"] in names for d in json.loads(path.read_text())["inputDatasets"]), path.name


def test_dataset_publish_checks_the_bucket_of_an_s3_datasource_first(tmp_path, capsys):
    data = variants.variant_spec(BASE, "analytics-s3")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    (tmp_path / "allow-analytics.rego").write_text((EXAMPLE / "allow-analytics.rego").read_text())
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({k: v for k, v in VARIABLES.items() if not k.startswith("s3_")}))
    document = variants.variant_document(json.loads((EXAMPLE / "documents" / "woodgrove-customers.dataset.json")
                                                    .read_text()), data)
    document["container"] = "woodgrove-elsewhere"
    (tmp_path / "doc.json").write_text(json.dumps(document))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "part-0.parquet").write_bytes(b"PAR1" + b"\0" * 16 + b"PAR1")
    # Neither storage nor CGS runs: the mismatch must be found before either is needed.
    code = main(["analytics", "dataset", "publish", str(tmp_path / "doc.json"), "--data", str(tmp_path / "data"),
                 "--spec", str(spec_path), "--endpoints", str(endpoints), "--contract", "c",
                 "--var", f"s3_endpoint={VARIABLES['s3_endpoint']}", "--var", "s3_region=us-east-1",
                 "--identity", str(tmp_path / "nobody")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "says container 'woodgrove-elsewhere', the spec's datasource 'woodgrove-input' is bucket " \
           "'woodgrove-input'" in err
