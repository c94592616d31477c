"""`ccr emulators start` runs CGS and Entra with the others; a member registered through endpoints.json
federates an identity and the room's identity sidecar gets a token for it."""

from __future__ import annotations

import json

import httpx
import jwt

from sidecars.cli import main as ccr
from sidecars.emulators import runner

from .conftest import ROOM_HOST_DATA, start_service


def test_emulators_run_cgs_and_entra_for_a_federated_room(tmp_path, capsys):
    run_dir = tmp_path / "run"
    registry = [entry for entry in runner.REGISTRY if entry.name in ("maa", "cgs", "entra")]
    endpoints = runner.start(run_dir, registry=registry)
    procs = []
    try:
        assert {"cgs_endpoint", "entra_endpoint", "cgs_operator_dir", "entra_tenant_id"} <= set(endpoints)
        endpoints_file = str(run_dir / "endpoints.json")

        def run(*args: str) -> str:
            code = ccr(["governance", *args])
            out = capsys.readouterr()
            assert code == 0, out.err
            return out.out

        run("member", "create", "alice", "--dir", str(tmp_path / "alice"))
        run("member", "register", str(tmp_path / "alice"), "--endpoints", endpoints_file)
        me = ["--endpoints", endpoints_file, "--identity", str(tmp_path / "alice")]
        run("contract", "create", "collab", *me)
        run("policy", "set", "collab", "--host-data", ROOM_HOST_DATA.hex(), *me)
        run("contract", "propose", "collab", *me)
        run("federate", "collab", "--client-id", "app-identity", "--endpoints", endpoints_file)

        skr, skr_url = start_service("skr", "sidecars.skr", [
            "--port", "0", "--platform", "mock", "--mock-platform-dir", endpoints["mock_platform_dir"],
            "--host-data", ROOM_HOST_DATA.hex()], tmp_path)
        procs.append(skr)
        gov, gov_url = start_service("governance", "sidecars.governance", [
            "--port", "0", "--cgs-endpoint", endpoints["cgs_endpoint"], "--contract-id", "collab",
            "--cgs-ca-bundle", endpoints["ca_bundle"], "--skr-url", skr_url, "--consent-poll-interval", "0"],
            tmp_path)
        procs.append(gov)
        identity, identity_url = start_service("identity", "sidecars.identity", [
            "--port", "0", "--governance-url", gov_url, "--entra-endpoint", endpoints["entra_endpoint"],
            "--entra-ca-bundle", endpoints["ca_bundle"], "--tenant-id", endpoints["entra_tenant_id"],
            "--client-id", "app-identity"], tmp_path)
        procs.append(identity)

        token = httpx.get(f"{identity_url}/metadata/identity/oauth2/token",
                          params={"api-version": "2018-02-01", "resource": "https://storage.azure.com"},
                          headers={"Metadata": "true"})
        assert token.status_code == 200, token.text
        claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
        assert claims["iss"] == endpoints["entra_issuer"] and claims["aud"] == "https://storage.azure.com"
        jwks = json.loads((run_dir / "entra" / "jwks.json").read_text())
        jwt.decode(token.json()["access_token"], jwt.PyJWK(jwks["keys"][0]).key, algorithms=["RS256"],
                   audience="https://storage.azure.com")
    finally:
        for proc in procs:
            proc.stop()
        runner.stop(run_dir)
