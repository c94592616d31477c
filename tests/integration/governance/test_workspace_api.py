"""The workspace's REST API against the real CGS stand-in, for two parties (northwind, woodgrove), each with its
own workspace: collaborations and members, datasets and queries with the CLI's own checks, approvals by the
data's owners, revocation, publishing as a job, the audit timeline with its chain verified and the room's
attestation verified by the workspace itself. Hostile input is refused one line per field; a workspace
never shows another party's unpublished dataset."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from sidecars.workspace.attestation import RoomEvidence

from .conftest import ROOM_HOST_DATA, register_consortium, start_cgs, unique
from .workspaces import workspace

pytestmark = pytest.mark.slow


def dataset(name: str, owner: str, **changes) -> dict:
    document = {"name": name, "owner": owner, "store": f"{owner}-store", "container": f"{owner}-data",
                "format": "csv",
                "schema": [{"name": "country", "type": "string"}, {"name": "amount", "type": "double"}],
                "allowedFields": ["country", "amount"], "accessMode": "aggregate",
                "encryption": {"mode": "CSE", "dekSecret": f"{owner}-dek", "kekName": f"{owner}-kek"}}
    return {**document, **changes}


def query(name: str, sql: str = "SELECT COUNT(*) AS n, SUM(amount) AS total FROM s") -> dict:
    return {"inputDatasets": [{"datasetName": name, "viewName": "s"}],
            "segments": [{"executionSequence": 1, "sql": sql}], "outputDataset": {"datasinkName": "woodgrove-out"}}


@pytest.fixture(scope="module")
def room(tmp_path_factory, server_tls, platform_dir, local_ca, room_evidence):
    run_dir = tmp_path_factory.mktemp("wsid-api")
    cgs = start_cgs(run_dir, server_tls, platform_dir)
    parties = register_consortium(cgs, local_ca, run_dir / "members", ("northwind", "woodgrove"))
    contract_id = unique("wsid-analytics")
    parties["northwind"].put_contract(contract_id, {"contract": {"members": ["northwind", "woodgrove"]}})
    parties.accept(parties["northwind"].propose_contract(contract_id))
    parties.accept(parties["northwind"].propose_policy(contract_id, {
        "x-ms-sevsnpvm-hostdata": [ROOM_HOST_DATA.hex()], "x-ms-sevsnpvm-is-debuggable": False}))
    evidence = RoomEvidence(room_evidence(), str(local_ca.cert_file), platform_dir)
    spaces = {name: workspace(cgs.url, local_ca.cert_file, run_dir / "members" / name, evidence=evidence)
              for name in ("northwind", "woodgrove")}
    yield {"cgs": cgs, "contract": contract_id, **spaces}
    cgs.proc.stop()


def test_collaborations_members_and_the_openapi(room):
    northwind, cid = room["northwind"], room["contract"]
    assert northwind.ok("GET", "/api/me")["name"] == "northwind"
    [collab] = [c for c in northwind.ok("GET", "/api/collaborations")["value"] if c["id"] == cid]
    assert collab["state"] == "Accepted" and collab["members"] == ["northwind", "woodgrove"]
    members = northwind.ok("GET", f"/api/collaborations/{cid}/members")["value"]
    assert {m["name"]: m["isMe"] for m in members} == {"northwind": True, "woodgrove": False}
    paths = northwind.ok("GET", "/api/openapi.json")["paths"]
    for path in ("/api/collaborations", "/api/collaborations/{collaboration_id}/queries/{query_id}/vote",
                 "/api/collaborations/{collaboration_id}/queries/{query_id}/run",
                 "/api/collaborations/{collaboration_id}/runs/{run}",
                 "/api/collaborations/{collaboration_id}/auditevents",
                 "/api/collaborations/{collaboration_id}/report", "/api/invitations/{invitation_id}/accept"):
        assert path in paths, path


def test_a_workspace_never_shows_another_partys_unpublished_dataset(room):
    northwind, woodgrove, cid = room["northwind"], room["woodgrove"], room["contract"]
    sales, ads = unique("sales"), unique("ads")
    published = northwind.ok("POST", f"/api/collaborations/{cid}/datasets",
                             {"document": dataset(sales, "northwind")}, status=201)
    assert published["proposalState"] == "Accepted" and published["dataset"]["mine"]
    draft = woodgrove.ok("POST", f"/api/collaborations/{cid}/datasets",
                         {"document": dataset(ads, "woodgrove"), "vote": False}, status=201)
    assert draft["proposalState"] == "Open"
    assert ads in {d["id"] for d in woodgrove.ok("GET", f"/api/collaborations/{cid}/datasets")["value"]}
    seen = {d["id"] for d in northwind.ok("GET", f"/api/collaborations/{cid}/datasets")["value"]}
    assert sales in seen and ads not in seen
    for path in (f"/api/collaborations/{cid}/datasets/{ads}", f"/api/collaborations/{cid}/datasets/{ads}/consent"):
        answer = northwind.get(path) if path.endswith(ads) else northwind.post(path, json={"enabled": False})
        assert answer.status_code == 404 and ads in answer.json()["errors"][0]["message"]
        assert "woodgrove" not in answer.text and "schema" not in answer.text
    assert woodgrove.ok("GET", f"/api/collaborations/{cid}/datasets/{sales}")["dataset"]["schema"]


def test_hostile_documents_are_refused_one_line_per_field(room):
    northwind, cid = room["northwind"], room["contract"]
    path = f"/api/collaborations/{cid}/datasets"
    bad = dataset(unique("sales"), "northwind", allowedFields=["country", "secret"],
                  schema=[{"name": "country", "type": "map<string,string>"}, {"name": "amount", "type": "double"}])
    answer = northwind.post(path, json={"document": bad})
    assert answer.status_code == 400
    fields = {p["field"] for p in answer.json()["errors"]}
    assert {"document.schema[0].type", "document.allowedFields[1]"} <= fields
    assert all("\n" not in p["message"] and "Traceback" not in p["message"] for p in answer.json()["errors"])
    answer = northwind.post(path, json={"document": dataset(unique("sales"), "woodgrove")})
    assert answer.status_code == 403 and answer.json()["errors"][0]["field"] == "document.owner"
    answer = northwind.post(path, json={"document": dataset(unique("s"), "northwind"), "admin": True})
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "admin"
    answer = northwind.post(path, content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["errors"][0]["message"] == "the body is not JSON"
    answer = northwind.post(path, content=b"[" * 400_000, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and list(answer.json()) == ["errors"]
    deep = {"document": json.loads("[" * 50 + "]" * 50)}
    assert northwind.post(path, json=deep).status_code == 400
    for hostile in ("..", "a/b", "x" * 300, "%2e%2e"):
        answer = northwind.get(f"/api/collaborations/{hostile}/datasets")
        assert answer.status_code == 404 and list(answer.json()) == ["errors"]
    assert northwind.get("/api/collaborations/not-mine-at-all/datasets").status_code == 404


def test_queries_checked_as_you_type_proposed_approved_by_the_owner_and_revoked(room):
    northwind, woodgrove, cid = room["northwind"], room["woodgrove"], room["contract"]
    sales = unique("sales")
    northwind.ok("POST", f"/api/collaborations/{cid}/datasets", {"document": dataset(sales, "northwind")}, status=201)
    check = f"/api/collaborations/{cid}/queries:check"
    rows = woodgrove.ok("POST", check, {"document": query(sales, "SELECT country, amount FROM s")})
    assert not rows["ok"] and rows["errors"][0]["field"] == "document.segments.0.sql"
    assert not woodgrove.ok("POST", check, {"document": query("ghost")})["ok"]
    syntax = woodgrove.ok("POST", check, {"document": {"segments": "nope"}})
    assert not syntax["ok"] and syntax["errors"][0]["field"].startswith("document")
    assert woodgrove.ok("POST", check, {"document": query(sales)}) == {"ok": True, "errors": []}
    refused = woodgrove.post(f"/api/collaborations/{cid}/queries",
                             json={"id": unique("q"), "document": query(sales, "SELECT country, amount FROM s")})
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "document.segments.0.sql"

    query_id = unique("totals")
    proposed = woodgrove.ok("POST", f"/api/collaborations/{cid}/queries", {"id": query_id, "document": query(sales)},
                            status=201)
    assert proposed["proposalState"] == "Open"
    assert proposed["query"]["owners"] == [{"name": "northwind", "ballot": "pending"}]
    assert proposed["query"]["ignoredVotes"] == ["woodgrove"]  # it owns none of the data: its accept counts for nothing
    voted = northwind.ok("POST", f"/api/collaborations/{cid}/queries/{query_id}/vote", {"ballot": "accept"})
    assert voted["proposalState"] == "Accepted"
    shown = woodgrove.ok("GET", f"/api/collaborations/{cid}/queries/{query_id}")
    assert shown["owners"] == [{"name": "northwind", "ballot": "accepted"}] and shown["approval"].startswith("approved")
    again = northwind.post(f"/api/collaborations/{cid}/queries/{query_id}/vote", json={"ballot": "accept"})
    assert again.status_code == 409
    assert northwind.post(f"/api/collaborations/{cid}/queries/{query_id}/vote",
                          json={"ballot": "maybe"}).json()["errors"][0]["field"] == "ballot"

    revoked = northwind.ok("POST", f"/api/collaborations/{cid}/datasets/{sales}/consent", {"enabled": False})
    assert revoked["status"] == "disabled" and revoked["revokedBy"] == ["northwind"]
    shown = woodgrove.ok("GET", f"/api/collaborations/{cid}/queries/{query_id}")
    assert shown["consent"]["status"] == "disabled" and shown["owners"][0]["ballot"] == "revoked"
    # woodgrove cannot undo northwind's revocation
    answer = woodgrove.post(f"/api/collaborations/{cid}/datasets/{sales}/consent", json={"enabled": True})
    assert answer.status_code == 403
    assert northwind.ok("POST", f"/api/collaborations/{cid}/datasets/{sales}/consent",
                        {"enabled": True})["status"] == "enabled"


def test_runs_need_a_room_and_say_so_in_one_line(room):
    answer = room["woodgrove"].post(f"/api/collaborations/{room['contract']}/queries/q1/run", json={})
    assert answer.status_code == 409 and "--room" in answer.json()["errors"][0]["message"]
    answer = room["woodgrove"].post(f"/api/collaborations/{room['contract']}/queries/q1/run",
                                    json={"startDate": "yesterday"})
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "startDate"


def test_publishing_files_is_a_job_whose_failure_names_the_field(room, tmp_path):
    northwind, cid = room["northwind"], room["contract"]
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "part-1.csv").write_text("country,amount,secret\nDE,1.0,x\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("not used: the files fail first\n")
    body = {"document": dataset(unique("sales"), "northwind"), "data": {"folder": str(folder), "spec": str(spec)}}
    started = northwind.ok("POST", f"/api/collaborations/{cid}/datasets", body, status=202)
    assert started["kind"] == "dataset-publish" and started["state"] == "running"
    deadline = time.monotonic() + 20
    while (job := northwind.ok("GET", f"/api/jobs/{started['id']}"))["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["state"] == "failed" and job["error"]["field"] == "data.folder" and "secret" in job["error"]["message"]
    events = northwind.get(f"/api/jobs/{started['id']}/events")
    assert events.headers["content-type"].startswith("text/event-stream")
    assert json.loads(events.text.strip().split("data: ", 1)[1])["state"] == "failed"
    missing = northwind.post(f"/api/collaborations/{cid}/datasets",
                             json={**body, "data": {"folder": str(tmp_path / "nope")}})
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "data.folder"
    assert northwind.get("/api/jobs/nope").status_code == 404


def test_the_audit_report_verifies_the_chain_and_the_rooms_attestation(room):
    northwind, cid = room["northwind"], room["contract"]
    events = northwind.ok("GET", f"/api/collaborations/{cid}/auditevents")
    assert events["chain"]["verified"] and events["chain"]["events"] == len(events["value"]) > 0
    mine = northwind.ok("GET", f"/api/collaborations/{cid}/auditevents?party=northwind")["value"]
    assert mine and all(e["party"] == "northwind" for e in mine)
    assert northwind.get(f"/api/collaborations/{cid}/auditevents?kind={'k' * 100}").status_code == 400

    report = northwind.ok("GET", f"/api/collaborations/{cid}/report")
    attestation = report["attestation"]
    assert attestation["verified"], attestation
    assert attestation["claims"]["x-ms-sevsnpvm-hostdata"] == ROOM_HOST_DATA.hex()
    assert any("HOST_DATA" in line for line in attestation["lines"])
    exported = northwind.get(f"/api/collaborations/{cid}/report.html")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    page = exported.text
    assert "Hash chain verified" in page and "Room attestation verified" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page


def test_a_room_with_another_cce_policy_is_not_verified(room, room_evidence, local_ca, platform_dir):
    other = RoomEvidence(room_evidence(host_data=hashlib.sha256(b"another policy").digest()),
                         str(local_ca.cert_file), platform_dir)
    party = room["northwind"].party
    saved, party.room_evidence = party.room_evidence, other
    try:
        report = room["northwind"].ok("GET", f"/api/collaborations/{room['contract']}/report")
    finally:
        party.room_evidence = saved
    assert not report["attestation"]["verified"] and "HOST_DATA" in report["attestation"]["problem"]
    # without trusting the mock platform, its chip is nobody's
    party.room_evidence = RoomEvidence(saved.url, saved.ca_bundle, None)
    try:
        report = room["northwind"].ok("GET", f"/api/collaborations/{room['contract']}/report")
    finally:
        party.room_evidence = saved
    assert not report["attestation"]["verified"]
