"""A store's credentials (an S3 key pair kept as a CGS secret) are the room's sidecars' only: the app, calling
the governance sidecar without the sidecar token, is refused them (it would reach the bucket around its
volume's encryption, manifest and prefix), and still gets the contract's other secrets."""

from __future__ import annotations

import asyncio

import httpx
import yaml

from sidecars.common.room import Placement, Room
from sidecars.governance.service import GovernanceConfig, build_app
from sidecars.room.registry import REGISTRY
from sidecars.spec import parse_spec

TOKEN = "s3core-sidecar-token"
S3_SECRET = "m1_publisher-s3"


class StubCgs:
    """What the sidecar asks CGS for a secret (attestation and consent are the CGS client's own tests)."""

    attested = True

    async def secret(self, secret_id: str) -> str:
        return f"value of {secret_id}"

    async def close(self) -> None:
        pass


def ask(secret_id: str, token: str | None) -> httpx.Response:
    app = build_app(StubCgs(), GovernanceConfig("c1", consent_poll_interval_s=0, sidecar_token=TOKEN,
                                                sidecar_only_secrets=frozenset({S3_SECRET})))

    async def post() -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gov") as client:
            return await client.post(f"/secrets/{secret_id}", headers=headers)

    return asyncio.run(post())


def test_the_app_is_refused_a_store_s_credentials_and_the_sidecars_get_them():
    refused = ask(S3_SECRET, None)
    assert refused.status_code == 403 and "only the room's sidecars" in refused.json()["error"]["message"]
    assert ask(S3_SECRET, "a-guess").status_code == 403
    assert ask(S3_SECRET, TOKEN).json() == {"value": f"value of {S3_SECRET}"}
    assert ask("m1_db-config", None).json() == {"value": "value of m1_db-config"}  # other secrets as before


def test_the_room_tells_governance_the_spec_s_store_secrets(repo, tmp_path):
    data = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
    data["datasources"][0]["store"] = {"kind": "s3", "region": "us-east-1", "bucket": "pub-input",
                                       "credentials": {"secret": S3_SECRET}}
    data["datasinks"][0]["store"] = {"kind": "s3", "region": "us-east-1", "bucket": "out-put",
                                     "credentials": {"role_arn": "arn:aws:iam::123456789012:role/r"}}
    spec = parse_spec(data, variables={"cgs_endpoint": "https://cgs.example", "maa_endpoint": "https://maa.example",
                                       "storage_url": "https://127.0.0.1:1/devstoreaccount1",
                                       "keyvault_url": "https://kv.example"})
    assert spec.store_credential_secrets() == frozenset({S3_SECRET})
    config = REGISTRY.get("governance").configure(Room(spec, Placement(run_dir=tmp_path), REGISTRY.layout()))
    assert config.sidecar_only_secrets == frozenset({S3_SECRET})
