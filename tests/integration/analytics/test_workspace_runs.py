"""Runs from the workspace: the room's app (real Spark) served over TLS from a contract CA, the party's
workspace starting a run with its own key, following it to success, listing it, and a refused run (a revoked
consent) answered in one line. The workspace knows the party's collaborations from the CGS stand-in."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sidecars.governance.member_client import CgsMemberClient, accept_by_all, join
from sidecars.workspace.app import build_app
from sidecars.workspace.party import Party, RoomEndpoint

from ..governance import conftest as governance_fixtures
from .test_run_commands import served  # noqa: F401 - the room's app over HTTPS, a fixture

pytestmark = pytest.mark.slow

gov_dir = governance_fixtures.gov_dir
local_ca = governance_fixtures.local_ca
server_tls = governance_fixtures.server_tls
platform_dir = governance_fixtures.platform_dir


@pytest.fixture(scope="module")
def collaboration(tmp_path_factory, server_tls, platform_dir, local_ca, identities):
    cgs = governance_fixtures.start_cgs(tmp_path_factory.mktemp("wsid-runs-cgs"), server_tls, platform_dir)
    ca = str(local_ca.cert_file)
    clients = [CgsMemberClient(cgs.url, identities[n], ca_bundle=ca) for n in ("northwind", "woodgrove")]
    operator = CgsMemberClient(cgs.url, cgs.operator, ca_bundle=ca)
    join(operator, clients)
    contract_id = governance_fixtures.unique("wsid-runs")
    clients[0].put_contract(contract_id, {"contract": {"members": ["northwind", "woodgrove"]}})
    accept_by_all([operator, *clients], clients[0].propose_contract(contract_id))
    yield cgs.url, contract_id
    for client in (operator, *clients):
        client.close()
    cgs.proc.stop()


def test_the_workspace_runs_a_query_follows_it_and_says_why_a_run_is_refused(
        room, served, collaboration, local_ca, identities):  # noqa: F811
    url, contract_ca, _ = served
    cgs_url, cid = collaboration
    party = Party(cgs_url=cgs_url, ca_bundle=str(local_ca.cert_file), identity_dir=identities["woodgrove"].directory,
                  mode="certificate", room=RoomEndpoint(url, Path(contract_ca)))
    party.base_url = "http://127.0.0.1:8765"
    woodgrove = TestClient(build_app(party), base_url=party.base_url)

    started = woodgrove.post(f"/api/collaborations/{cid}/queries/q1/run", json={"runId": "ws1"})
    assert started.status_code == 202, started.text
    assert started.json()["runId"] == "ws1"
    deadline = time.monotonic() + 120
    while (run := woodgrove.get(f"/api/collaborations/{cid}/runs/ws1").json())["status"] not in ("succeeded", "failed",
                                                                                                    "refused"):
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    assert run["status"] == "succeeded" and run["rowsWritten"] == 3 and run["timings"]
    listed = woodgrove.get(f"/api/collaborations/{cid}/runs", params={"query": "q1"}).json()["value"]
    assert "ws1" in {r["runId"] for r in listed}

    room.gov.disabled["nw-sales"] = "revoked by northwind"
    refused = woodgrove.post(f"/api/collaborations/{cid}/queries/q1/run", json={})
    assert 400 <= refused.status_code < 500
    [problem] = refused.json()["errors"]
    assert problem["message"].startswith("ConsentRevoked: execution consent for dataset 'nw-sales'")
    assert woodgrove.get(f"/api/collaborations/{cid}/runs/no such run").status_code == 404
    # another collaboration's id is no way into this room
    assert woodgrove.post("/api/collaborations/someone-elses/queries/q1/run", json={}).status_code == 404
