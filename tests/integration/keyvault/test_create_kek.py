"""`ccr keys create-kek`: the key it creates is released to the room its policy names, and to nobody else."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.common.jose import public_jwk, thumbprint
from sidecars.skr.release import load_roots, unwrap_released_key, verify_release_jws

from .conftest import HOST_DATA

REPO = Path(__file__).resolve().parents[3]


def ccr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


@pytest.fixture
def endpoints(tmp_path, keyvault, authority) -> Path:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"keyvault_url": keyvault.url, "maa_endpoint": authority.url,
                                "ca_bundle": keyvault.ca_file, "dev_tokens_dir": str(keyvault.tokens.directory)}))
    return path


@pytest.mark.parametrize("kty", ["RSA-HSM", "oct-HSM"])
def test_create_kek_explains_the_policy_and_binds_the_key_to_it(endpoints, keyvault, authority, kty):
    name = f"kek-{kty.lower()}-{uuid.uuid4().hex[:6]}"
    result = ccr("keys", "create-kek", "--endpoints", str(endpoints), "--name", name, "--kty", kty,
                 "--host-data", HOST_DATA.upper())
    assert result.returncode == 0, result.stderr
    assert f"attested by {authority.url}" in result.stdout
    assert f"CCE policy whose SHA-256 is {HOST_DATA}" in result.stdout
    assert "cannot be debugged" in result.stdout and "endorsed by Microsoft" in result.stdout

    keys = KeyClient(keyvault.url, keyvault.tokens.credential(), connection_verify=keyvault.ca_file,
                     verify_challenge_resource=False)
    room = rsa.generate_private_key(65537, 2048)
    jwk = public_jwk(room.public_key())
    jwk["kid"] = thumbprint(jwk)
    released = keys.release_key(name, authority.token(jwk))
    payload = verify_release_jws(released.value, "127.0.0.1", load_roots(keyvault.ca_file))
    assert unwrap_released_key(payload, room).kty == kty

    with pytest.raises(HttpResponseError) as err:
        keys.release_key(name, authority.token(jwk, **{"x-ms-sevsnpvm-hostdata": "0" * 64}))
    assert err.value.status_code == 403 and "x-ms-sevsnpvm-hostdata" in err.value.message


def test_create_kek_mistakes_are_one_line(endpoints, tmp_path):
    bad_hash = ccr("keys", "create-kek", "--endpoints", str(endpoints), "--name", "k", "--host-data", "abc")
    unreachable = ccr("keys", "create-kek", "--vault-url", "https://127.0.0.1:1", "--maa-endpoint",
                      "https://maa.example", "--name", "k", "--host-data", HOST_DATA,
                      "--ca-bundle", json.loads(endpoints.read_text())["ca_bundle"], "--endpoints", str(endpoints))
    for result, words in ((bad_hash, "--host-data"), (unreachable, "cannot reach")):
        assert result.returncode == 1
        assert result.stderr.startswith("ccr: error:") and words in result.stderr
        assert "Traceback" not in result.stderr


def test_import_secret_gives_the_room_back_the_exact_bytes_and_nobody_else(endpoints, keyvault, authority, tmp_path):
    password = "q7Hc2-pX9_vLm4RtZs8Wn3Ky6Bd1Fg0J"  # 32 characters: an oct-HSM key of 256 bits
    value_file = tmp_path / "password.txt"
    value_file.write_text(password + "\n")
    name = f"db-password-{uuid.uuid4().hex[:6]}"
    result = ccr("keys", "import-secret", "--endpoints", str(endpoints), "--name", name,
                 "--value-file", str(value_file), "--host-data", HOST_DATA)
    assert result.returncode == 0, result.stderr
    assert "oct-HSM 256-bit, exportable" in result.stdout and password not in result.stdout + result.stderr

    keys = KeyClient(keyvault.url, keyvault.tokens.credential(), connection_verify=keyvault.ca_file,
                     verify_challenge_resource=False)
    room = rsa.generate_private_key(65537, 2048)
    jwk = public_jwk(room.public_key())
    jwk["kid"] = thumbprint(jwk)
    payload = verify_release_jws(keys.release_key(name, authority.token(jwk)).value, "127.0.0.1",
                                 load_roots(keyvault.ca_file))
    assert unwrap_released_key(payload, room).material == password.encode()
    with pytest.raises(HttpResponseError) as err:
        keys.release_key(name, authority.token(jwk, **{"x-ms-sevsnpvm-hostdata": "0" * 64}))
    assert err.value.status_code == 403


def test_import_secret_of_a_size_no_vault_keeps_is_refused_before_anything_is_sent(endpoints, tmp_path):
    value_file = tmp_path / "short.txt"
    value_file.write_text("hunter2")
    result = ccr("keys", "import-secret", "--endpoints", str(endpoints), "--name", "pw", "--value-file",
                 str(value_file), "--host-data", HOST_DATA)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("ccr: error: --value-file") and "7 bytes" in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
