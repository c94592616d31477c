"""The analytics app on the real wire: the CGS stand-in and the room's governance sidecar as processes (the
governance tests' fixtures), members publishing and approving with the real member client, and the app
(real Spark) reading members, documents, final votes and consents through the sidecar and auditing to CGS.
Northwind then revokes its dataset: the next run is refused, and both runs are in the contract's events."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from sidecars.analytics.roomgov import AnalyticsGovernance
from sidecars.analytics.service import Analytics, ServiceConfig, build_app

from ..governance import conftest as governance_fixtures
from .conftest import JOIN_SQL, SINK, dataset_doc, query_doc, write_story_files

pytestmark = pytest.mark.slow

# The governance tests' fixtures (their certificates, mock platform, CGS and sidecar processes), used by name.
gov_dir = governance_fixtures.gov_dir
local_ca = governance_fixtures.local_ca
server_tls = governance_fixtures.server_tls
platform_dir = governance_fixtures.platform_dir
room_evidence = governance_fixtures.room_evidence
cgs = governance_fixtures.cgs
governance = governance_fixtures.governance
ROOM_HOST_DATA = governance_fixtures.ROOM_HOST_DATA
unique = governance_fixtures.unique


@pytest.fixture(scope="module")
def analytics_cgs(tmp_path_factory, server_tls, platform_dir):
    service = governance_fixtures.start_cgs(tmp_path_factory.mktemp("analytics-app-cgs"), server_tls, platform_dir)
    yield service
    service.proc.stop()


def test_a_run_through_the_governance_sidecar_and_cgs_then_revocation(
        analytics_cgs, local_ca, governance, spark_engine, tmp_path):
    parties = governance_fixtures.register_consortium(analytics_cgs, local_ca, tmp_path / "members",
                                                      ("northwind", "woodgrove"))
    northwind, woodgrove = parties["northwind"], parties["woodgrove"]
    contract = unique("analytics-app")
    northwind.put_contract(contract, {"purpose": "join sales with stores"})
    parties.accept(northwind.propose_contract(contract))
    parties.accept(northwind.propose_policy(contract, {"x-ms-sevsnpvm-hostdata": [ROOM_HOST_DATA.hex()],
                                                       "x-ms-sevsnpvm-is-debuggable": False}))
    # the files and the sink, as the room's mounts show them; the documents through CGS
    mount_root = tmp_path / "mnt"
    write_story_files(mount_root)
    sales, stores, query_id = unique("nw-sales"), unique("wg-stores"), unique("join")
    nw = dataset_doc(sales, "northwind", "nwstore", [("region", "string"), ("amount", "bigint"), ("email", "string")],
                     ["region", "amount"])
    wg = dataset_doc(stores, "woodgrove", "wgstore", [("region", "string"), ("store", "string")], ["region", "store"],
                     aggregationThreshold=1)
    for member, name, document in ((northwind, sales, nw), (woodgrove, stores, wg)):
        proposal = member.propose_analytics_document(name, contract, "dataset", json.dumps(document))
        member.vote(proposal["proposalId"], True)
    proposal = woodgrove.propose_analytics_document(
        query_id, contract, "query", json.dumps(query_doc(JOIN_SQL, ((sales, "nw"), (stores, "wg")))))
    woodgrove.vote(proposal["proposalId"], True)
    northwind.vote(proposal["proposalId"], True)

    room = governance(contract, cgs_url=analytics_cgs.url)
    analytics = Analytics(ServiceConfig(room, mount_root, tmp_path / "scratch", watch_interval_s=0.2),
                          spark_engine, AnalyticsGovernance(room))
    try:
        with TestClient(build_app(analytics)) as client:
            def call(member, method, path, body=b""):
                auth = member.identity.authorization(method, path, body)
                return client.request(method, path, content=body, headers={"authorization": auth})

            answer = call(woodgrove, "POST", f"/queries/{query_id}/run", b'{"runId": "wire1"}')
            assert answer.status_code == 202, answer.text
            for _ in range(600):
                run = call(woodgrove, "GET", "/runs/wire1").json()
                if run["status"] not in ("queued", "preparing", "running"):
                    break
                time.sleep(0.1)
            assert run["status"] == "succeeded", run
            assert sorted((mount_root / SINK / "wire1" / "segment-1.csv").read_text().splitlines()[1:]) == [
                "east,4,22", "north,4,30", "west,4,26"]

            northwind.set_document_execution(contract, sales, False)
            refused = call(woodgrove, "POST", f"/queries/{query_id}/run", b'{"runId": "wire2"}')
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "ConsentRevoked" and "northwind" in error["message"]
            assert not (mount_root / SINK / "wire2").exists()
    finally:
        analytics.close()

    events, _ = northwind.events(contract)
    runs = [(e["data"].get("event"), e["data"].get("runId")) for e in events
            if str(e["data"].get("event", "")).startswith("analytics.run.")]
    assert ("analytics.run.accepted", "wire1") in runs and ("analytics.run.succeeded", "wire1") in runs
    assert ("analytics.run.refused", "wire2") in runs
