"""Key Vault accepting tokens from an Entra-shaped token service (`--trust-entra URL`, the slot the Entra
stand-in uses): any tenant's v1 tokens, keys fetched over TLS from URL/{tenant}/discovery/v2.0/keys."""

from __future__ import annotations

import json
import ssl
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import start_keyvault

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def entra_vault(pki, authority, tmp_path_factory):
    vault = start_keyvault(pki, tmp_path_factory.mktemp("entra-vault"), "--trust-entra", authority.url)
    yield vault
    vault.process.stop()


def entra_token(authority, key=None, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": "https://sts.windows.net/7e3c0000-0000-4000-8000-00000000beef/", "aud": "https://vault.azure.net",
              "tid": "7e3c0000-0000-4000-8000-00000000beef", "iat": now, "nbf": now, "exp": now + 600, "oid": "o"}
    claims.update(overrides)
    return jwt.encode(claims, key or authority.key, algorithm="RS256", headers={"kid": authority.kid})


def get_keys(vault, token) -> httpx.Response:
    return httpx.get(f"{vault.url}/keys", params={"api-version": "7.4"}, headers={"Authorization": f"Bearer {token}"},
                     verify=ssl.create_default_context(cafile=vault.ca_file))


def test_entra_token_accepted(entra_vault, authority):
    assert get_keys(entra_vault, entra_token(authority)).status_code == 200


@pytest.mark.parametrize("attack", ["other-key", "other-issuer-host", "expired", "storage-audience"])
def test_entra_shaped_forgeries_refused(entra_vault, authority, attack):
    now = int(time.time())
    token = {
        "other-key": lambda: entra_token(authority, key=rsa.generate_private_key(65537, 2048)),
        "other-issuer-host": lambda: entra_token(authority, iss="https://sts.evil.example/tid/"),
        "expired": lambda: entra_token(authority, exp=now - 3600, nbf=now - 7200),
        "storage-audience": lambda: entra_token(authority, aud="https://storage.azure.com"),
    }[attack]()
    assert get_keys(entra_vault, token).status_code == 401


def test_sdk_through_azure_identity_and_the_entra_stand_in(pki, authority, tmp_path):
    """The whole chain as a room's identity uses it: a federated assertion (signed by the test authority,
    an OIDC issuer) -> the Entra stand-in's token endpoint via azure-identity -> Key Vault via the SDK."""
    from azure.identity import ClientAssertionCredential
    from azure.keyvault.secrets import SecretClient

    from sidecars.common.process import ManagedProcess

    client_id, tenant = "3f1c0000-0000-4000-8000-0000000000aa", "7e3c0000-0000-4000-8000-00000000beef"
    tls = pki.issue_server_cert("entra", directory=tmp_path)
    ready = tmp_path / "entra.ready.json"
    entra = ManagedProcess("entra", [
        sys.executable, "-m", "sidecars.emulators.entra", "--port", "0", "--cert", tls.cert_file, "--key", tls.key_file,
        "--ready-file", str(ready), "--ca-bundle", str(pki.cert_file),
        "--federated-credential", f"{client_id},{authority.url},room-identity"],
        ready=ready.exists, ready_timeout=30, log_path=tmp_path / "entra.log", cwd=REPO)
    with entra:
        entra_url = json.loads(ready.read_text())["url"]
        vault = start_keyvault(pki, tmp_path / "vault", "--trust-entra", entra_url)
        try:
            def assertion() -> str:
                now = int(time.time())
                return jwt.encode({"iss": authority.url, "sub": "room-identity", "aud": "api://AzureADTokenExchange",
                                   "iat": now, "nbf": now, "exp": now + 300}, authority.key, algorithm="RS256",
                                  headers={"kid": authority.kid})

            credential = ClientAssertionCredential(tenant, client_id, assertion, authority=entra_url,
                                                   disable_instance_discovery=True, connection_verify=vault.ca_file,
                                                   additionally_allowed_tenants=["*"])
            secrets = SecretClient(vault.url, credential, connection_verify=vault.ca_file,
                                   verify_challenge_resource=False)
            assert secrets.set_secret("via-entra", "ok").value == "ok"
        finally:
            vault.process.stop()
