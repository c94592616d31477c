from __future__ import annotations

import json
import socket
import time

import pytest
from azure.core.credentials import AccessToken
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from sidecars.common import keyflow
from sidecars.common.deks import Kek, KeyUnwrapError, WrappedDek, unwrap_dek, wrap_dek
from sidecars.common.errors import ConfigError, RemoteServiceError
from sidecars.common.keyflow import read_wrapped
from sidecars.common.objectformat import DataKey


def rsa_jwk(private: bool = True) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return json.loads(RSAAlgorithm.to_jwk(key if private else key.public_key()))


def test_rsa_wrap_with_public_unwrap_with_released_private() -> None:
    jwk = rsa_jwk()
    public = {k: jwk[k] for k in ("kty", "n", "e")}
    dek = DataKey.generate()
    wrapped = wrap_dek(dek, Kek.from_jwk(public, kid="kek"))
    assert wrapped.alg == "RSA-OAEP-256"
    stored = WrappedDek.from_json(wrapped.to_json())
    # skr returns the JWK as a JSON string, with an HSM key type
    released = Kek.from_jwk(json.dumps(dict(jwk, kty="RSA-HSM")), kid="kek")
    assert unwrap_dek(stored, released).export_material() == dek.export_material()
    with pytest.raises(KeyUnwrapError, match="no private part"):
        unwrap_dek(stored, Kek.from_jwk(public, kid="kek"))


def test_oct_kek_uses_aes_kwp() -> None:
    kek = Kek.from_jwk({"kty": "oct", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}, kid="oct")
    dek = DataKey.generate()
    wrapped = wrap_dek(dek, kek)
    assert wrapped.alg == "A256KWP" and len(wrapped.wrapped) == 40
    assert unwrap_dek(wrapped, kek).fingerprint == dek.fingerprint


def test_wrong_kek_or_altered_secret_gives_no_key() -> None:
    dek = DataKey.generate()
    wrapped = wrap_dek(dek, Kek.from_jwk(rsa_jwk(), kid="right"))
    with pytest.raises(KeyUnwrapError, match="does not unwrap"):
        unwrap_dek(wrapped, Kek.from_jwk(rsa_jwk(), kid="other"))
    oct_kek = Kek.from_jwk({"kty": "oct", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}, kid="oct")
    altered = wrap_dek(dek, oct_kek)
    altered = WrappedDek(altered.alg, altered.kek, bytes([altered.wrapped[0] ^ 1]) + altered.wrapped[1:],
                         altered.segment_size, altered.fingerprint)
    with pytest.raises(KeyUnwrapError):
        unwrap_dek(altered, oct_kek)
    with pytest.raises(KeyUnwrapError, match="wrapped with RSA-OAEP-256"):
        unwrap_dek(wrapped, oct_kek)


def test_malformed_inputs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cannot wrap"):
        Kek.from_jwk({"kty": "EC", "crv": "P-256"})
    with pytest.raises(ConfigError, match="not a wrapped DEK"):
        WrappedDek.from_json('{"format": "other"}')


def test_download_refuses_names_escaping_the_target(tmp_path) -> None:
    from sidecars.volumes.owner import safe_target

    assert safe_target(tmp_path, "a/b.csv") == tmp_path / "a" / "b.csv"
    for name in ("../escape", "/etc/passwd", "a/../../x", "dir/", ""):
        with pytest.raises(ConfigError, match="cannot be written safely"):
            safe_target(tmp_path, name)


def test_keyword_interfaces_other_sidecars_use() -> None:
    """telemetry calls fetch_dek and container_client with identity_endpoint=...: these are interfaces."""
    import inspect

    from sidecars.common.azure_clients import container_client
    from sidecars.common.keyflow import fetch_dek

    assert {"ca_bundle", "account_key", "credential", "identity_endpoint"} <= set(
        inspect.signature(container_client).parameters)

    params = inspect.signature(fetch_dek).parameters
    for name in ("skr_url", "maa_endpoint", "kek_vault_url", "kek_name", "secret_vault_url", "secret_name",
                 "ca_bundle", "identity_endpoint", "credential", "dev_tokens_dir"):
        assert name in params


def test_an_unreachable_key_vault_is_named_in_one_line_not_a_traceback():
    """Key Vault refusing connections while a volume's DEK is read: a RemoteServiceError naming the vault
    (which the mount process reports as the mount's reason), not the SDK's exception."""
    class Static:
        def get_token(self, *_scopes, **_kwargs) -> AccessToken:
            return AccessToken("t", int(time.time()) + 3600)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secrets = SecretClient(f"https://127.0.0.1:{port}", Static(), retry_total=0,
                           verify_challenge_resource=False)
    with pytest.raises(RemoteServiceError, match=rf"^Key Vault: https://127.0.0.1:{port}/? unreachable reading "
                                                 r"secret consumer-output-dek: "):
        read_wrapped(secrets, "consumer-output-dek")


def test_the_owners_token_goes_to_skr_with_the_release(monkeypatch):
    """skr has no identity of its own in production: the volumes sidecar asks for the key with the token of the
    key owner's identity (from the identity sidecar), for the vault's scope, in `access_token`."""
    class OwnerCredential:
        def __init__(self):
            self.scopes: list[str] = []

        def get_token(self, *scopes, **_kwargs):
            self.scopes += scopes
            return AccessToken("owner-token", 2**31)

    released: dict = {}
    monkeypatch.setattr(keyflow, "secret_client", lambda *a, **k: object())
    monkeypatch.setattr(keyflow, "read_wrapped", lambda *a: "wrapped")
    monkeypatch.setattr(keyflow, "unwrap_dek", lambda wrapped, kek: ("dek", wrapped, kek))
    monkeypatch.setattr(keyflow, "release_kek", lambda skr, **kwargs: released.update(kwargs) or "kek")
    credential = OwnerCredential()
    for vault, scope in (("https://vault.example.test", "https://vault.azure.net/.default"),
                         ("https://hsm.managedhsm.azure.net", "https://managedhsm.azure.net/.default")):
        credential.scopes.clear()
        assert keyflow.fetch_dek(skr_url="http://127.0.0.1:8284", maa_endpoint="https://maa.example.test",
                                 kek_vault_url=vault, kek_name="k", secret_vault_url=vault, secret_name="s",
                                 credential=credential) == ("dek", "wrapped", "kek")
        assert released["access_token"] == "owner-token" and credential.scopes == [scope]
