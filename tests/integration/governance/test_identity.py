"""The identity sidecar: azure-identity's ManagedIdentityCredential, unchanged in a plain Python client,
gets tokens through governance (CGS-issued federated assertion) and the Entra stand-in, and Azurite and
the Key Vault stand-in accept them."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.room import Emulation, Placement, Room
from sidecars.common.transports import tls_verify
from sidecars.emulators.azurite import start_azurite
from sidecars.room.registry import REGISTRY
from sidecars.room.runner import configure_in_room
from sidecars.spec import parse_spec

from .conftest import start_service

CLIENT_ID = "2f6f2a5e-7a0c-4d57-9d9c-3f1c6c8f0b11"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

APP = textwrap.dedent("""
    import os, sys
    from azure.identity import ManagedIdentityCredential
    from azure.storage.blob import BlobServiceClient

    credential = ManagedIdentityCredential(client_id=os.environ["CLIENT_ID"])
    service = BlobServiceClient(os.environ["BLOB_URL"], credential=credential,
                                connection_verify=os.environ["CA_FILE"])
    container = service.create_container("results")
    container.upload_blob("answer.txt", b"42")
    print(container.download_blob("answer.txt").readall().decode())

    from azure.keyvault.secrets import SecretClient

    vault = SecretClient(os.environ["VAULT_URL"], credential, verify_challenge_resource=False,
                         connection_verify=os.environ["CA_FILE"])
    vault.set_secret("db-password", "s3cret")
    print(vault.get_secret("db-password").value)
""")


@pytest.fixture
def entra(tmp_path, server_tls, local_ca, cgs):
    state = tmp_path / "entra"
    proc, url = start_service("entra", "sidecars.emulators.entra", [
        "--cert", server_tls.cert_file, "--key", server_tls.key_file, "--state-dir", str(state),
        "--ca-bundle", str(local_ca.cert_file)], tmp_path)
    yield url, state / "federated-credentials.json"
    proc.stop()


@pytest.fixture
def keyvault(tmp_path, server_tls, local_ca, entra):
    """The Key Vault stand-in trusting the Entra stand-in's tokens for TENANT_ID."""
    jwks = tmp_path / "entra" / "jwks.json"
    proc, url = start_service("keyvault", "sidecars.emulators.keyvault", [
        "--port", "0", "--cert", server_tls.cert_file, "--key", server_tls.key_file,
        "--ca-file", str(local_ca.cert_file),
        "--trust-issuer-jwks", f"https://sts.windows.net/{TENANT_ID}/={jwks}"], tmp_path)
    yield url
    proc.stop()


def _identity(tmp_path, governance_url, entra_url, local_ca, *extra):
    return start_service("identity", "sidecars.identity", [
        "--port", "0", "--governance-url", governance_url, "--entra-endpoint", entra_url,
        "--entra-ca-bundle", str(local_ca.cert_file), "--tenant-id", TENANT_ID, "--client-id", CLIENT_ID,
        *extra], tmp_path)


def test_managed_identity_credential_gets_tokens_azurite_and_key_vault_accept(
        tmp_path, consortium, governance, entra, keyvault, cgs, local_ca, server_tls):
    contract_id = consortium.new_contract()
    entra_url, credentials_file = entra
    credentials_file.write_text(json.dumps([{"clientId": CLIENT_ID, "issuer": f"{cgs.url}/oidc",
                                             "subject": contract_id, "audiences": ["api://AzureADTokenExchange"]}]))
    (tmp_path / "identity-header").write_text("header-secret")
    identity, identity_url = _identity(tmp_path, governance(contract_id), entra_url, local_ca,
                                       "--identity-header-file", str(tmp_path / "identity-header"))
    try:
        with start_azurite(tls=server_tls, ca_file=str(local_ca.cert_file), oauth=True,
                           log_path=tmp_path / "azurite.log") as azurite:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
            env.update(AZURE_POD_IDENTITY_AUTHORITY_HOST=identity_url, CLIENT_ID=CLIENT_ID,
                       BLOB_URL=azurite.blob_url, VAULT_URL=keyvault, CA_FILE=str(local_ca.cert_file))
            result = subprocess.run([sys.executable, "-c", APP], env=env, capture_output=True, text=True,
                                    timeout=20)
            assert result.returncode == 0, result.stderr[-2000:]
            assert result.stdout.split() == ["42", "s3cret"]

        token = httpx.get(f"{identity_url}/metadata/identity/oauth2/token",
                          params={"api-version": "2018-02-01", "resource": "https://vault.azure.net"},
                          headers={"Metadata": "true"}).json()
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert claims["aud"] == "https://vault.azure.net" and claims["iss"] == f"https://sts.windows.net/{TENANT_ID}/"
        assert claims["appid"] == CLIENT_ID
        app_service = httpx.get(f"{identity_url}/msi/token", headers={"X-IDENTITY-HEADER": "header-secret"},
                                params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"})
        assert app_service.status_code == 200 and app_service.json()["access_token"] == token["access_token"]
        wrong_header = httpx.get(f"{identity_url}/msi/token", headers={"X-IDENTITY-HEADER": "guess"},
                                 params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"})
        assert wrong_header.status_code == 401 and "access_token" not in wrong_header.text
        cloud_shell = httpx.post(f"{identity_url}/msi/token", headers={"Metadata": "true"},
                                 data={"resource": "https://storage.azure.com"})
        assert cloud_shell.status_code == 200 and cloud_shell.json()["resource"] == "https://storage.azure.com"
        events, _ = consortium["alice"].events(contract_id)
        assert sum(e["data"].get("event") == "token-issued" for e in events) == 2
    finally:
        identity.stop()


def test_no_federated_credential_no_token(tmp_path, consortium, governance, entra, cgs, local_ca):
    contract_id = consortium.new_contract()
    entra_url, credentials_file = entra
    credentials_file.write_text(json.dumps([{"clientId": CLIENT_ID, "issuer": f"{cgs.url}/oidc",
                                             "subject": "some-other-contract"}]))
    identity, identity_url = _identity(tmp_path, governance(contract_id), entra_url, local_ca)
    try:
        refused = httpx.get(f"{identity_url}/metadata/identity/oauth2/token",
                            params={"api-version": "2018-02-01", "resource": "https://storage.azure.com"},
                            headers={"Metadata": "true"})
        assert refused.status_code == 400
        assert "AADSTS700213" in refused.json()["error_description"]
        no_header = httpx.get(f"{identity_url}/metadata/identity/oauth2/token",
                              params={"resource": "https://storage.azure.com"})
        assert no_header.status_code == 400 and no_header.json()["error"] == "invalid_request"
    finally:
        identity.stop()


def test_forged_assertion_is_refused_by_entra(tmp_path, entra, cgs, local_ca):
    entra_url, credentials_file = entra
    credentials_file.write_text(json.dumps([{"clientId": CLIENT_ID, "issuer": f"{cgs.url}/oidc",
                                             "subject": "c1"}]))
    forged = jwt.encode({"iss": f"{cgs.url}/oidc", "sub": "c1", "aud": "api://AzureADTokenExchange",
                         "iat": 1, "exp": 4102444800}, rsa.generate_private_key(65537, 2048), algorithm="PS256",
                        headers={"kid": "whatever"})
    response = httpx.post(f"{entra_url}/{TENANT_ID}/oauth2/v2.0/token", verify=tls_verify(str(local_ca.cert_file)),
                          data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "scope": "https://storage.azure.com/.default",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": forged})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def _start_configured(name: str, room: Room, tmp_path: Path) -> tuple[ManagedProcess, str]:
    """A sidecar configured from `room` by its registry record, as `ccr sidecar run NAME` does in a room (its
    configuration handed to the process whole, since these rooms share the host's loopback)."""
    config = configure_in_room(REGISTRY.get(name), room)
    blob = tmp_path / f"{name}.config.pickle"
    blob.write_bytes(pickle.dumps(config))
    code = ("import pickle, sys; from sidecars.room.registry import REGISTRY; "
            f"sys.exit(REGISTRY.get({name!r}).entry_point()(pickle.loads(open({str(blob)!r}, 'rb').read())))")
    proc = ManagedProcess(name, [sys.executable, "-c", code], ready=file_exists(config.ready_file), ready_timeout=30,
                          log_path=tmp_path / f"{name}.log").start()
    return proc, json.loads(config.ready_file.read_text())["url"]


def test_sidecars_configured_from_the_room_alone(tmp_path, consortium, entra, cgs, local_ca, room_evidence):
    """In a room the sidecars derive everything from the resolved spec and the registry's layout: here the
    layout's ports are the test's (0: any free one; skr is the test's evidence source)."""
    contract_id = consortium.new_contract()
    entra_url, credentials_file = entra
    credentials_file.write_text(json.dumps([{"clientId": CLIENT_ID, "issuer": f"{cgs.url}/oidc",
                                             "subject": contract_id}]))
    spec = parse_spec({
        "name": "spec-only", "maa_endpoint": "https://maa.invalid",
        "contract": {"id": contract_id, "governance": {"endpoint": cgs.url, "ca_bundle": str(local_ca.cert_file),
                                                       "consent_poll_interval_s": 0.5}},
        "datasources": [{"name": "input", "store": {
            "account_url": "https://acct.blob.core.windows.net", "container": "input",
            "identity": {"client_id": CLIENT_ID, "tenant_id": TENANT_ID}}, "encryption": {"mode": "SSE"}}],
        "application": {"name": "app", "image": "localhost/app@sha256:" + "0" * 64,
                        "resources": {"cpu": 0.5, "memory_gb": 0.5}},
    })
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"entra_endpoint": entra_url, "ca_bundle": str(local_ca.cert_file)}))
    placement = Placement(run_dir=tmp_path / "run", emulation=Emulation.load(endpoints))
    ports = {name: dict(p) for name, p in REGISTRY.layout().ports.items()}
    ports["skr"]["api"] = int(room_evidence().rsplit(":", 1)[1])
    ports["governance"]["api"] = 0
    gov, gov_url = _start_configured("governance", Room(spec, placement, replace(REGISTRY.layout(), ports=ports)),
                                     tmp_path)
    ports["governance"]["api"], ports["identity"]["api"] = int(gov_url.rsplit(":", 1)[1]), 0
    identity, identity_url = _start_configured(
        "identity", Room(spec, placement, replace(REGISTRY.layout(), ports=ports)), tmp_path)
    try:
        status = httpx.get(f"{gov_url}/status").json()
        assert status["contractId"] == contract_id
        token = httpx.get(f"{identity_url}/metadata/identity/oauth2/token", headers={"Metadata": "true"},
                          params={"api-version": "2018-02-01", "resource": "https://storage.azure.com",
                                  "client_id": CLIENT_ID})
        assert token.status_code == 200, token.text
        claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
        assert claims["tid"] == TENANT_ID
    finally:
        identity.stop()
        gov.stop()
