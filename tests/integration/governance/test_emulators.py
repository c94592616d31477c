"""`ccr emulators start` runs CGS and Entra with the others; `ccr governance setup` agrees a spec's contract
(members, policy from its HOST_DATA, federation) and the room's sidecars then get consent and tokens."""

from __future__ import annotations

import json

import httpx
import jwt
import yaml

from sidecars.cli import main as ccr
from sidecars.emulators import runner
from sidecars.renderings.layers import LockedImages
from sidecars.renderings.render import render
from sidecars.room.group import render_group
from sidecars.spec import load_spec

from .conftest import layer_lock, start_service

SPEC = {
    "apiVersion": "ccr/v1", "name": "collab-room", "maa_endpoint": "https://maa.invalid",
    "contract": {"id": "collab", "members": ["alice", "bob"], "governance": {"endpoint": "${cgs_endpoint}"}},
    "datasources": [{"name": "input", "owner": "alice", "encryption": {"mode": "SSE"}, "store": {
        "account_url": "https://acct.blob.core.windows.net", "container": "input",
        "identity": {"client_id": "app-identity", "tenant_id": "c0de0000-0000-4000-8000-00000000e002"}}}],
    "application": {"name": "app", "image": "localhost/app@sha256:" + "0" * 64,
                    "resources": {"cpu": 0.5, "memory_gb": 0.5}},
}


def test_emulators_and_setup_give_a_room_consent_and_tokens(tmp_path, capsys):
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

        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(SPEC))
        variables = {"cgs_endpoint": endpoints["cgs_endpoint"]}
        spec = load_spec(spec_file, variables=variables)
        (tmp_path / "layers.json").write_text(layer_lock(render_group(spec)).dump())
        host_data = render(spec, LockedImages.load(tmp_path / "layers.json")).host_data
        setup = ["setup", str(spec_file), "--endpoints", endpoints_file, "--members-dir", str(tmp_path / "members"),
                 "--layers", str(tmp_path / "layers.json")]
        out = run(*setup)
        assert "registered member alice" in out and "registered member bob" in out
        assert f"contract collab: accepted, HOST_DATA {host_data}, execution enabled" in out
        again = run(*setup)
        assert "registered" not in again and "Accepted" not in again and "execution enabled" in again
        assert "execution: enabled" in run("consent", "status", "collab", "--endpoints", endpoints_file,
                                           "--identity", str(tmp_path / "members" / "bob"))

        skr, skr_url = start_service("skr", "sidecars.skr", [
            "--port", "0", "--platform", "mock", "--mock-platform-dir", endpoints["mock_platform_dir"],
            "--host-data", host_data], tmp_path)
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
        assert httpx.post(f"{gov_url}/consentcheck/execution").json()["status"] == "enabled"
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


def test_setup_on_a_stand_in_shared_with_another_contracts_members(tmp_path, capsys):
    """A second room with a new member (carol) on a stand-in where alice and bob are already active: the new
    member and the second contract need their votes too, and their identities are in the members dir."""
    run_dir = tmp_path / "run"
    endpoints = runner.start(run_dir, registry=[entry for entry in runner.REGISTRY
                                                if entry.name in ("maa", "cgs", "entra")])
    try:
        def setup(spec: dict, name: str) -> str:
            spec_file = tmp_path / f"{name}.yaml"
            spec_file.write_text(yaml.safe_dump(spec))
            loaded = load_spec(spec_file, variables={"cgs_endpoint": endpoints["cgs_endpoint"]})
            (tmp_path / f"{name}-layers.json").write_text(layer_lock(render_group(loaded)).dump())
            code = ccr(["governance", "setup", str(spec_file), "--endpoints", str(run_dir / "endpoints.json"),
                        "--members-dir", str(tmp_path / "members"), "--layers", str(tmp_path / f"{name}-layers.json")])
            out = capsys.readouterr()
            assert code == 0, out.err
            return out.out

        setup(SPEC, "first")
        second = {**SPEC, "name": "second-room", "datasources": [],
                  "contract": {**SPEC["contract"], "id": "second", "members": ["carol"]}}
        out = setup(second, "second")
        assert "registered member carol" in out and "contract second: accepted" in out
    finally:
        runner.stop(run_dir)
