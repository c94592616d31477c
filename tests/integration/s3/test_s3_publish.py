"""`ccr data publish` and `ccr data download` over S3 in each of its modes (CSE, SSE-C, SSE), against the S3
stand-in and the Key Vault stand-in; bad input is one line naming the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sidecars.cli import main
from sidecars.common import objectformat as fmt
from sidecars.volumes.manifest import MANIFEST_BLOB
from tests.integration.volumes.test_owner_cli import make_tree, read_tree, rsa_kek  # noqa: F401

from .conftest import s3_client


@pytest.fixture
def owner(monkeypatch, tmp_path, keyvault_emulation, s3_emulation) -> dict:  # noqa: F811
    """The owner's shell: an endpoints file (vault, S3, CA), a home for DEKs, their AWS key pair."""
    monkeypatch.setenv("CCR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "s3core-owner")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3core-owner-secret")
    endpoints = tmp_path / "endpoints.json"
    s3 = {k: s3_emulation[k] for k in ("s3_endpoint", "s3_region")}
    bundle = tmp_path / "ca-bundle.pem"  # two emulations, two CAs
    bundle.write_text(Path(keyvault_emulation["ca_bundle"]).read_text() + Path(s3_emulation["ca_bundle"]).read_text())
    endpoints.write_text(json.dumps({**keyvault_emulation, **s3, "ca_bundle": str(bundle)}))
    return {"endpoints": str(endpoints)}


def args(owner, bucket, mode, *extra) -> list[str]:
    return ["--s3", f"s3://{bucket}/2026/q4", "--mode", mode, "--secret", f"{bucket}-dek",
            "--endpoints", owner["endpoints"], *extra]


@pytest.mark.parametrize("mode", ["CSE", "SSE-C", "SSE"])
def test_publish_then_download_over_s3(owner, tmp_path, bucket, rsa_kek, s3_emulation, mode, capsys):  # noqa: F811
    files = make_tree(tmp_path / "src")
    kek = [] if mode == "SSE" else ["--kek", str(rsa_kek[0])]
    assert main(["data", "publish", str(tmp_path / "src"), *args(owner, bucket, mode, *kek)]) == 0
    pin = capsys.readouterr().out.split("manifest sha256 ")[1].split()[0]
    stored = s3_client(s3_emulation).list_objects_v2(Bucket=bucket)["Contents"]
    keys = {o["Key"]: o["Size"] for o in stored}
    assert f"2026/q4/{MANIFEST_BLOB}" in keys
    raw = s3_client(s3_emulation).get_object(Bucket=bucket, Key="2026/q4/a.csv")["Body"].read()
    if mode == "CSE":
        assert keys["2026/q4/sub/dir/big.bin"] == fmt.ciphertext_size(300_000) and b"id,value" not in raw
    else:  # the provider's own encryption: S3 sees (and moto stores) the clear text
        assert raw == files["a.csv"]
    assert main(["data", "download", "-o", str(tmp_path / "out"), *args(owner, bucket, mode),
                 "--manifest-sha256", pin]) == 0
    assert read_tree(tmp_path / "out") == files


def test_a_missing_bucket_is_one_line(owner, tmp_path, capsys):
    assert main(["data", "download", "-o", str(tmp_path / "out"),
                 *args(owner, "s3core-not-there", "SSE"), "--untrusted"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("S3: bucket s3core-not-there does not exist "
                            f"({json.loads(Path(owner['endpoints']).read_text())['s3_endpoint']})"), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("flag", "why"), [("s3://Bad_Bucket", "--s3: bucket: String should match pattern"),
                                           ("s3://bucket/../other", "--s3: prefix: must be written normalised"),
                                           ("https://bucket", "write s3://BUCKET or s3://BUCKET/PREFIX")])
def test_a_hostile_s3_flag_is_one_line(owner, tmp_path, capsys, flag, why):
    assert main(["data", "download", "-o", str(tmp_path / "out"), "--s3", flag, "--mode", "SSE",
                 "--endpoints", owner["endpoints"]]) != 0
    assert why in capsys.readouterr().err


def test_an_object_tampered_in_the_bucket_is_named_and_nothing_of_it_is_written(owner, tmp_path, bucket, rsa_kek,  # noqa: F811
                                                                                 s3_emulation, capsys):
    make_tree(tmp_path / "src")
    assert main(["data", "publish", str(tmp_path / "src"), *args(owner, bucket, "CSE", "--kek", str(rsa_kek[0]))]) == 0
    pin = capsys.readouterr().out.split("manifest sha256 ")[1].split()[0]
    client = s3_client(s3_emulation)
    raw = bytearray(client.get_object(Bucket=bucket, Key="2026/q4/sub/dir/big.bin")["Body"].read())
    raw[100_000] ^= 1
    client.put_object(Bucket=bucket, Key="2026/q4/sub/dir/big.bin", Body=bytes(raw))
    for extra in (["--manifest-sha256", pin], ["--untrusted"]):
        out = tmp_path / f"out{len(extra)}"
        assert main(["data", "download", "-o", str(out), *args(owner, bucket, "CSE"), *extra]) != 0
        assert f"s3/{bucket}/2026/q4/sub/dir/big.bin" in capsys.readouterr().err
        assert not (out / "sub/dir/big.bin").exists()


def test_publish_and_download_by_the_spec_s_s3_volume(owner, tmp_path, bucket, rsa_kek, s3_emulation, repo):  # noqa: F811
    data = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["datasources"][0]["store"] = {"kind": "s3", "endpoint": "${s3_endpoint}", "region": "${s3_region}",
                                       "bucket": bucket, "prefix": "input", "addressing": "path",
                                       "credentials": {"secret": "publishermember_s3"}}
    data["datasources"][0]["encryption"]["key"]["dek_secret_name"] = f"{bucket}-dek"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    files = make_tree(tmp_path / "src")
    others = ["--var", "cgs_endpoint=https://127.0.0.1:1", "--var", "maa_endpoint=https://127.0.0.1:2",
              "--var", "storage_url=https://127.0.0.1:3/devstoreaccount1"]  # the rest of the spec, unused here
    by_spec = ["--spec", str(spec), "--volume", "publisher-input", "--endpoints", owner["endpoints"], *others]
    assert main(["data", "publish", str(tmp_path / "src"), *by_spec, "--kek", str(rsa_kek[0]), "--pin", str(spec)]) == 0
    assert yaml.safe_load(spec.read_text())["datasources"][0]["manifest_sha256"]
    assert f"input/{MANIFEST_BLOB}" in {o["Key"] for o in
                                        s3_client(s3_emulation).list_objects_v2(Bucket=bucket)["Contents"]}
    assert main(["data", "download", "-o", str(tmp_path / "out"), *by_spec]) == 0  # checked against the pin
    assert read_tree(tmp_path / "out") == files


def test_publish_aborts_the_uploads_an_earlier_session_left(owner, tmp_path, bucket, s3_emulation, capsys):
    """An upload whose abort failed (the store unreachable then) keeps its parts, billed, until aborted: the
    owner's next publish to the prefix aborts it, and leaves a neighbouring prefix's alone."""
    s3 = s3_client(s3_emulation)
    left = s3.create_multipart_upload(Bucket=bucket, Key="2026/q4/a.csv")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="2026/q4/a.csv", UploadId=left, PartNumber=1, Body=b"x" * 1024)
    neighbour = s3.create_multipart_upload(Bucket=bucket, Key="2026/q4x/a.csv")["UploadId"]
    make_tree(tmp_path / "src")
    assert main(["data", "publish", str(tmp_path / "src"), *args(owner, bucket, "SSE")]) == 0
    assert f"aborted 1 incomplete upload(s) an earlier session left in {bucket}/2026/q4" in capsys.readouterr().err
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [neighbour]
