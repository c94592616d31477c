"""The run API end to end with a real Spark engine: runs, idempotency, every refusal of the issue's "Bad
input" list (one line, audited, nothing in the sink), dry runs, and revocation while a query runs."""

from __future__ import annotations

import time

import pytest

from sidecars.analytics.runs import Run, RunRequest, RunStore

from .conftest import NW_DATASET, WG_DATASET, dataset_doc, query_doc, write_csv

#: a real Spark session (started once, ~15 s) runs these
pytestmark = pytest.mark.slow


def sink_files(room) -> list[str]:
    return sorted(str(p.relative_to(room.sink)) for p in room.sink.rglob("*") if p.is_file())


def refused(room, response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    assert sink_files(room) == []
    return error["message"]


def audited(room, outcome: str) -> list[dict]:
    return [e for e in room.gov.events if e.get("event") == f"analytics.run.{outcome}"]


def test_an_approved_query_runs_and_its_result_is_in_the_sink(room):
    answer = room.run("woodgrove", "q1", {"runId": "r1"})
    assert answer.status_code == 202 and answer.json()["runId"] == "r1"
    run = room.wait("woodgrove", "r1")
    assert run["status"] == "succeeded", run
    assert run["output"] == ["r1/segment-1.csv"] and run["submittedBy"] == "woodgrove"
    lines = (room.sink / "r1" / "segment-1.csv").read_text().splitlines()
    assert lines[0] == "region,n,total"
    # 12 rows, regions round-robin: each region has 4 sales; amounts 1..12
    assert sorted(lines[1:]) == ["east,4,22", "north,4,30", "west,4,26"]
    assert {"prepare", "sql"} <= set(run["timings"])
    accepted, succeeded = audited(room, "accepted"), audited(room, "succeeded")
    assert accepted[0]["datasets"] == [NW_DATASET, WG_DATASET] and accepted[0]["member"] == "woodgrove"
    assert succeeded[0]["rowsWritten"] == 3
    # northwind, an owner of an input, follows the run
    assert [r["runId"] for r in room.call("northwind", "GET", "/queries/q1/runs").json()["value"]] == ["r1"]


def test_a_run_id_is_idempotent_and_a_different_request_under_it_conflicts(room):
    first = room.run("woodgrove", "q1", {"runId": "same", "dryRun": True})
    assert first.status_code == 202 and first.json()["status"] == "validated"
    again = room.run("woodgrove", "q1", {"runId": "same", "dryRun": True})
    assert again.status_code == 200 and again.json() == {"runId": "same", "status": "validated"}
    refused(room, room.run("woodgrove", "q1", {"runId": "same"}), 409, "RunIdConflict")
    refused(room, room.run("northwind", "q1", {"runId": "same", "dryRun": True}), 409, "RunIdConflict")
    assert len(audited(room, "accepted")) == 1  # the repeat did not prepare or audit again


def test_a_dry_run_validates_without_spark_or_sink(room):
    answer = room.run("woodgrove", "q1", {"dryRun": True})
    run = room.call("woodgrove", "GET", f"/runs/{answer.json()['runId']}").json()
    assert run["status"] == "validated" and run["dryRun"] is True and run["startedAt"] is None
    assert sink_files(room) == [] and audited(room, "validated")


@pytest.mark.parametrize("body, message", [
    ({"runId": "../etc"}, "runId must be"),
    ({"dryRun": "yes"}, "dryRun must be a bool"),
    ({"startDate": "2024-02-30"}, "startDate must be a date"),
    ({"startDate": "2024-03-01", "endDate": "2024-02-01"}, "is after endDate"),
    ({"sql": "DROP TABLE x"}, "unknown field 'sql'"),
])
def test_a_malformed_run_request_is_refused_in_one_line(room, body, message):
    response = room.run("woodgrove", "q1", body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert sink_files(room) == []


def test_unknown_dataset_is_refused_audited_and_nothing_written(room):
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish("q-ghost", "query", query_doc("SELECT COUNT(*) AS n FROM gh", (("ghost", "gh"),)),
                     {ids["woodgrove"]: True})
    message = refused(room, room.run("woodgrove", "q-ghost", {"runId": "g1"}), 400, "UnknownDataset")
    assert "'ghost'" in message
    assert audited(room, "refused")[0]["runId"] == "g1"
    assert room.call("woodgrove", "GET", "/runs/g1").json()["status"] == "refused"


def test_sql_that_does_not_parse_is_refused(room):
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish("q-bad", "query", query_doc("SELECT region, COUNT(*) FROM nw GROUP BY ((", (("nw-sales", "nw"),)),
                     {ids["northwind"]: True})
    message = refused(room, room.run("woodgrove", "q-bad"), 400, "SqlRefused")
    assert message.startswith("segment 1:") and audited(room, "refused")


def test_a_non_allowed_column_is_refused_naming_it(room):
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish("q-email", "query", query_doc("SELECT email, COUNT(*) AS n FROM nw GROUP BY email",
                                                    (("nw-sales", "nw"),)), {ids["northwind"]: True})
    assert "email" in refused(room, room.run("woodgrove", "q-email"), 400, "SqlRefused")


def test_a_revoked_dataset_is_refused_naming_who_revoked(room):
    room.gov.disabled[NW_DATASET] = "execution consent revoked by northwind"
    message = refused(room, room.run("woodgrove", "q1"), 403, "ConsentRevoked")
    assert "nw-sales" in message and "northwind" in message
    # northwind finds the refused attempt on its data in the audit trail
    event = audited(room, "refused")[0]
    assert event["datasets"] == [NW_DATASET, WG_DATASET] and event["member"] == "woodgrove"
    assert event["reason"] == message


def test_a_revoked_contract_is_refused(room):
    room.gov.contract_disabled = True
    refused(room, room.run("woodgrove", "q1"), 403, "ConsentRevoked")


def test_an_unapproved_query_is_refused_with_the_missing_owner(room):
    ids = {n: i.member_id for n, i in room.identities.items()}
    # fabrikam owns no input: its accept is ignored; woodgrove has not voted
    room.gov.publish("q2", "query", query_doc(), {ids["northwind"]: True, ids["fabrikam"]: True})
    message = refused(room, room.run("woodgrove", "q2"), 403, "QueryNotApproved")
    assert "not yet accepted by woodgrove" in message


def test_an_owner_rejecting_refuses_the_query(room):
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish("q3", "query", query_doc(), {ids["northwind"]: False, ids["woodgrove"]: True})
    assert "rejected or revoked by northwind" in refused(room, room.run("woodgrove", "q3"), 403, "QueryNotApproved")


def test_a_proposed_query_and_a_dataset_document_as_query_are_refused(room):
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish("q4", "query", query_doc(), {ids["northwind"]: True, ids["woodgrove"]: True}, state="Proposed")
    refused(room, room.run("woodgrove", "q4"), 403, "DocumentNotAccepted")
    refused(room, room.run("woodgrove", NW_DATASET), 404, "UnknownQuery")
    refused(room, room.run("woodgrove", "nothing-here"), 404, "UnknownQuery")


def test_a_dataset_document_filed_under_another_name_cannot_stand_in(room):
    ids = {n: i.member_id for n, i in room.identities.items()}
    # fabrikam files a document under id "wg-stores"-like name of its own, describing woodgrove's data
    room.gov.publish("fk-copy", "dataset", dataset_doc(WG_DATASET, "fabrikam", "wgstore", [("region", "string")],
                                                       ["region"]), {ids["fabrikam"]: True})
    room.gov.publish("q5", "query", query_doc("SELECT COUNT(*) AS n FROM x", (("fk-copy", "x"),)),
                     {ids["fabrikam"]: True})
    refused(room, room.run("fabrikam", "q5"), 400, "InvalidAnalyticsDocument")


def test_a_dataset_whose_files_do_not_match_its_schema_fails_the_run_with_nothing_written(room):
    write_csv(room.mount_root / "nwstore" / "part-2.csv", ["region", "price", "email"], [["east", 1, "x@y"]])
    room.run("woodgrove", "q1", {"runId": "mm"})
    run = room.wait("woodgrove", "mm")
    assert run["status"] == "refused" and run["error"]["code"] == "SchemaMismatch", run
    assert "part-2.csv" in run["error"]["message"] and "\n" not in run["error"]["message"]
    assert sink_files(room) == [] and audited(room, "refused")


def test_revocation_while_running_cancels_the_run_and_publishes_nothing(room):
    slow_query(room, "q-slow")
    # prepare checks consent once, the worker once more before Spark: the 4th check is the watcher's second
    room.gov.disable_after[NW_DATASET] = 3
    started = time.monotonic()
    room.run("woodgrove", "q-slow", {"runId": "rv"})
    run = room.wait("woodgrove", "rv", timeout=120)
    assert run["status"] == "revoked", run
    assert run["error"]["code"] == "ConsentRevoked" and "revoked by northwind" in run["error"]["message"]
    assert sink_files(room) == []
    assert audited(room, "revoked")[0]["runId"] == "rv"
    assert time.monotonic() - started < 60
    # and a new run of it is refused before Spark
    refused(room, room.run("woodgrove", "q-slow"), 403, "ConsentRevoked")


def slow_query(room, query_id: str) -> None:
    """A self-join over 4000 rows: long enough that the watcher checks consent while Spark runs."""
    rows = [["east" if i % 2 else "west", i, f"p{i}@nw.example"] for i in range(4000)]
    write_csv(room.mount_root / "nwstore" / "part-1.csv", ["region", "amount", "email"], rows)
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish(query_id, "query", query_doc(
        "SELECT a.region, COUNT(*) AS n FROM nw a JOIN nw b ON a.amount < b.amount GROUP BY a.region",
        (("nw-sales", "nw"),)), {ids["northwind"]: True})


def test_consent_that_cannot_be_confirmed_stops_the_run(room):
    slow_query(room, "q-dark")
    # governance answers the prepare phase and the check before Spark, then goes dark
    room.gov.consent_down_after[NW_DATASET] = 2
    room.run("woodgrove", "q-dark", {"runId": "dark"})
    run = room.wait("woodgrove", "dark", timeout=120)
    assert run["status"] == "failed" and run["error"]["code"] == "ConsentUnconfirmed", run
    assert sink_files(room) == []


def test_no_run_starts_when_its_audit_is_not_acknowledged(room):
    room.gov.audit_down = True
    response = room.run("woodgrove", "q1", {"runId": "unaudited"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "AuditNotAcknowledged"
    time.sleep(0.5)
    assert room.call("woodgrove", "GET", "/runs/unaudited").json()["status"] == "failed"
    assert sink_files(room) == []


def test_runs_beyond_the_bound_are_refused_not_queued(room):
    for index in range(room.analytics.config.max_active_runs):  # a backlog, as if members had flooded the queue
        room.analytics.store.create(Run(f"backlog{index}", RunRequest("q1"), "fabrikam", status="queued"))
    refused(room, room.run("woodgrove", "q1", {"runId": "one-more"}), 429, "TooManyRuns")
    assert room.run("woodgrove", "q1", {"dryRun": True}).status_code == 202  # a dry run queues nothing


def test_runs_survive_an_app_restart_and_interrupted_ones_are_marked(room, tmp_path):
    room.run("woodgrove", "q1", {"runId": "kept", "dryRun": True})
    store = room.analytics.store
    store.create(Run("cut", RunRequest("q1"), "woodgrove", status="running"))
    reopened = RunStore(room.analytics.config.scratch / "runs.sqlite")
    assert reopened.get("kept").status == "validated"
    assert reopened.get("cut").status == "failed" and reopened.get("cut").error_code == "RunInterrupted"
