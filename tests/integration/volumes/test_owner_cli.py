"""`ccr data publish` / `ccr data download` against Azurite and a Key Vault secrets endpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.cli import main
from sidecars.common import objectformat as fmt
from sidecars.volumes.manifest import MANIFEST_BLOB, is_reserved
from tests.integration.volumes.conftest import secret_versions


@pytest.fixture
def rsa_kek(tmp_path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "kek.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    private = tmp_path / "kek.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return public, private


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.csv": b"id,value\n1,2\n", "empty.bin": b"", "sub/dir/big.bin": os.urandom(300_000)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def publish(owner_env, src, container, kek, *extra) -> int:
    return main(["data", "publish", str(src), "--container", container, "--kek", str(kek), "--secret",
                 f"{container}-dek", "--endpoints", owner_env["endpoints"], *extra])


def download(owner_env, dest, container, *extra) -> int:
    return main(["data", "download", "-o", str(dest), "--container", container, "--secret", f"{container}-dek",
                 "--endpoints", owner_env["endpoints"], *extra])


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_publish_then_download_round_trip(owner_env, tmp_path, container_name, rsa_kek, blob_service, vault_secrets):
    src = tmp_path / "src"
    files = make_tree(src)
    assert publish(owner_env, src, container_name, rsa_kek[0]) == 0
    container = blob_service.get_container_client(container_name)
    stored = {b.name: b.size for b in container.list_blobs() if not is_reserved(b.name)}
    assert stored == {name: fmt.ciphertext_size(len(data)) for name, data in files.items()}
    manifest = json.loads(container.download_blob(MANIFEST_BLOB).readall())
    assert {o["name"]: o["size"] for o in manifest["objects"]} == stored
    raw = container.download_blob("a.csv").readall()
    assert b"id,value" not in raw  # storage holds ciphertext only
    secret = json.loads(vault_secrets.get_secret(f"{container_name}-dek").value)
    assert secret["alg"] == "RSA-OAEP-256"

    assert download(owner_env, tmp_path / "out", container_name) == 0
    assert read_tree(tmp_path / "out") == files

    # with only the private KEK (no local DEK file): unwrap the secret
    os.environ["CCR_HOME"] = str(tmp_path / "elsewhere")
    assert download(owner_env, tmp_path / "out2", container_name, "--kek", str(rsa_kek[1])) == 0
    assert read_tree(tmp_path / "out2") == files


def test_rerun_reuses_the_dek_and_refuses_a_second_one(owner_env, tmp_path, container_name, rsa_kek, vault_secrets,
                                                       capsys):
    src = tmp_path / "src"
    make_tree(src)
    assert publish(owner_env, src, container_name, rsa_kek[0]) == 0
    assert publish(owner_env, src, container_name, rsa_kek[0]) == 0
    versions = secret_versions(vault_secrets, f"{container_name}-dek")
    assert len({v["fingerprint"] for v in versions}) == 1
    # the local copy lost and only the public KEK at hand: refused, not a second DEK
    os.environ["CCR_HOME"] = str(tmp_path / "fresh")
    capsys.readouterr()
    assert publish(owner_env, src, container_name, rsa_kek[0]) == 1
    assert "already holds a DEK" in capsys.readouterr().err
    assert len(secret_versions(vault_secrets, f"{container_name}-dek")) == len(versions)


def test_tampered_object_fails_loudly_and_leaves_nothing_in_clear(owner_env, tmp_path, container_name, rsa_kek,
                                                                  blob_service, capsys):
    src = tmp_path / "src"
    files = make_tree(src)
    assert publish(owner_env, src, container_name, rsa_kek[0]) == 0
    blob = blob_service.get_container_client(container_name).get_blob_client("sub/dir/big.bin")
    data = bytearray(blob.download_blob().readall())
    data[200_000] ^= 0x04  # the fourth segment: earlier segments verify and were already decrypted
    blob.upload_blob(bytes(data), overwrite=True)
    capsys.readouterr()
    out = tmp_path / "out"
    assert download(owner_env, out, container_name) == 1
    err = capsys.readouterr().err
    assert "sub/dir/big.bin" in err and "failed authentication" in err
    left = read_tree(out)
    assert left == {k: v for k, v in files.items() if k != "sub/dir/big.bin"}  # no partial file either


def test_sse_and_cpk_modes(owner_env, tmp_path, container_name, rsa_kek, blob_service):
    src = tmp_path / "src"
    files = make_tree(src)
    assert publish(owner_env, src, container_name, rsa_kek[0], "--mode", "SSE") == 0
    assert blob_service.get_container_client(container_name).download_blob("a.csv").readall() == files["a.csv"]
    assert download(owner_env, tmp_path / "out", container_name, "--mode", "SSE") == 0
    assert read_tree(tmp_path / "out") == files
    # CPK: Azurite (loose) accepts and ignores the key, so this checks our requests, not storage's enforcement
    cpk = container_name + "cpk"
    assert publish(owner_env, src, cpk, rsa_kek[0], "--mode", "CPK") == 0
    assert download(owner_env, tmp_path / "cpk", cpk, "--mode", "CPK") == 0
    assert read_tree(tmp_path / "cpk") == files


def test_user_mistakes_are_one_line(owner_env, tmp_path, capsys):
    assert main(["data", "publish", str(tmp_path / "missing"), "--container", "abc", "--secret", "s",
                 "--kek", "x", "--endpoints", owner_env["endpoints"]]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ccr: error:") and "\n" not in err
    assert main(["data", "download", "-o", str(tmp_path), "--storage-url", "https://127.0.0.1:1/acct"]) == 1
    assert "missing --container" in capsys.readouterr().err


def test_publish_takes_names_from_the_spec(owner_env, tmp_path, rsa_kek, vault_secrets, blob_service, repo):
    """The example spec's datasource, endpoints from endpoints.json: no container or secret flags."""
    endpoints = json.loads(Path(owner_env["endpoints"]).read_text())
    endpoints.update(maa_endpoint="https://maa.example", cgs_endpoint="https://cgs.example")
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
    src = tmp_path / "src"
    files = make_tree(src)
    args = ["--spec", str(repo / "examples/cleanroomhello-job/spec.yaml"), "--volume", "publisher-input",
            "--endpoints", str(tmp_path / "endpoints.json")]
    try:
        assert main(["data", "publish", str(src), "--kek", str(rsa_kek[0]), *args]) == 0
        assert secret_versions(vault_secrets, "publisher-input-dek")
        assert main(["data", "download", "-o", str(tmp_path / "out"), *args]) == 0
        assert read_tree(tmp_path / "out") == files
    finally:
        blob_service.delete_container("publisher-input")


def test_publish_in_two_phases_pins_the_manifest(owner_env, tmp_path, rsa_kek, vault_secrets, blob_service, repo,
                                                 capsys):
    """What the demo does: data first (the pin changes HOST_DATA, which the KEK's release policy needs), the
    wrapped DEK once the KEK exists; then a download checked against the pin, which a rollback fails."""
    endpoints = json.loads(Path(owner_env["endpoints"]).read_text())
    endpoints.update(maa_endpoint="https://maa.example", cgs_endpoint="https://cgs.example")
    (tmp_path / "endpoints.json").write_text(json.dumps(endpoints))
    spec = tmp_path / "spec.yaml"
    spec.write_text((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    src = tmp_path / "src"
    files = make_tree(src)
    dek_file = tmp_path / "publisher-dek.json"
    args = ["--spec", str(spec), "--volume", "partner-input", "--endpoints", str(tmp_path / "endpoints.json"),
            "--dek-file", str(dek_file)]
    try:
        assert main(["data", "publish", str(src), "--data-only", "--pin", str(spec), *args]) == 0
        with pytest.raises(ResourceNotFoundError):  # no KEK needed yet, and no secret written
            vault_secrets.get_secret("partner-input-dek")
        pin = capsys.readouterr().out.split("manifest sha256 ")[1].split()[0]
        assert f"manifest_sha256: {pin}" in spec.read_text()
        assert main(["data", "publish", "--key-only", "--kek", str(rsa_kek[0]), *args]) == 0
        assert json.loads(vault_secrets.get_secret("partner-input-dek").value)["fingerprint"] == \
            json.loads(dek_file.read_text())["fingerprint"]
        assert main(["data", "download", "-o", str(tmp_path / "out"), *args]) == 0
        assert read_tree(tmp_path / "out") == files

        # Publish a new version of one file, then roll storage back to the old one: the pinned download refuses.
        container = blob_service.get_container_client("partner-input")
        old = container.download_blob("a.csv").readall()
        (src / "a.csv").write_bytes(b"id,value\n1,3\n")
        capsys.readouterr()
        assert main(["data", "publish", str(src), "--data-only", "--pin", str(spec), *args]) == 0
        container.upload_blob("a.csv", old, overwrite=True)
        capsys.readouterr()
        assert main(["data", "download", "-o", str(tmp_path / "rolled"), *args]) == 1
        assert "a.csv: not the version the manifest names" in capsys.readouterr().err
        assert not read_tree(tmp_path / "rolled")
        # Both at once, or neither: one line each.
        assert main(["data", "publish", str(src), "--key-only", *args]) == 1
        assert main(["data", "publish", "--data-only", *args]) == 1
        err = capsys.readouterr().err
        assert "--key-only (and no DIR)" in err and err.count("ccr: error:") == 2
    finally:
        blob_service.delete_container("partner-input")
