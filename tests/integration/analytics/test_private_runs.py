"""Private runs through the run API with a real Spark engine: the spend is acknowledged by CGS (through the
governance sidecar) before Spark starts; a budget that lacks room, or a CGS that does not acknowledge, refuses
the run with nothing in the sink; a dry run spends nothing; a replayed runId asks once; the run's status
carries released cells, not counts of data rows."""

from __future__ import annotations

import pytest

from .conftest import NW_DATASET, SINK, dataset_doc

pytestmark = pytest.mark.slow

PRIVACY = {"epsilonTotal": 3, "perQueryEpsilonMax": 1, "contributionBound": 1, "personKey": "email"}
PRIVATE_SQL = "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM nw GROUP BY region"


def publish_private(room, epsilon: float = 0.5) -> None:
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish(NW_DATASET, "dataset", dataset_doc(
        NW_DATASET, "northwind", "nwstore", [("region", "string"), ("amount", "bigint"), ("email", "string")],
        ["region", "amount", "email"], accessMode="aggregate", privacy=PRIVACY), {ids["northwind"]: True})
    room.gov.publish("dpq", "query", {
        "inputDatasets": [{"datasetName": NW_DATASET, "viewName": "nw"}], "outputDataset": {"datasinkName": SINK},
        "segments": [{"executionSequence": 1, "sql": PRIVATE_SQL, "private": True, "epsilon": epsilon,
                      "publicKeys": {"region": ["east", "west", "north", "south"]}, "bounds": {"amount": [0, 20]}}]},
        {ids["northwind"]: True})


def sink_files(room) -> list[str]:
    return sorted(str(p.relative_to(room.sink)) for p in room.sink.rglob("*") if p.is_file())


def test_a_private_run_spends_before_spark_and_releases_every_public_key(room):
    publish_private(room)
    answer = room.run("woodgrove", "dpq", {"runId": "p1"})
    assert answer.status_code == 202, answer.text
    run = room.wait("woodgrove", "p1")
    assert run["status"] == "succeeded", run
    assert room.gov.spends == [{"runId": "p1", "queryId": "dpq"}]
    assert run["epsilonSpent"] == 0.5
    lines = (room.sink / "p1" / "segment-1.csv").read_text().splitlines()
    assert lines[0] == "region,n,total"
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["east", "north", "south", "west"]
    # the status counts released cells (the public key set), not rows of data
    assert (run["rowsWritten"], run["groupsSuppressed"]) == (4, 0)
    accepted = [e for e in room.gov.events if e.get("event") == "analytics.run.accepted"]
    assert accepted[0]["epsilonSpent"] == 0.5
    again = room.run("woodgrove", "dpq", {"runId": "p1"})
    assert again.status_code == 200 and len(room.gov.spends) == 1


def test_an_exhausted_budget_refuses_the_run_before_spark_naming_what_is_left(room):
    publish_private(room)
    message = "dataset 'nw-sales': the run needs epsilon 0.5, 0.2 of 3 is left"
    room.gov.spend_answer = (409, {"error": {"code": "PrivacyBudgetExhausted", "message": message}})
    tracker = room.analytics.engine._session.sparkContext.statusTracker()
    jobs_before = len(tracker.getJobIdsForGroup("p2"))
    answer = room.run("woodgrove", "dpq", {"runId": "p2"})
    assert answer.status_code == 409
    assert answer.json()["error"] == {"code": "PrivacyBudgetExhausted", "message": message}
    assert len(tracker.getJobIdsForGroup("p2")) == jobs_before == 0
    assert sink_files(room) == []
    run = room.call("woodgrove", "GET", "/runs/p2").json()
    assert run["status"] == "refused" and run["epsilonSpent"] == 0.0


@pytest.mark.parametrize("answer", [
    (503, {"error": {"code": "ServiceUnavailable", "message": "CGS unreachable"}}),
    (200, {"acknowledged": True, "runId": "someone-else", "queryId": "dpq"}),
    (200, {"acknowledged": False, "runId": "p3", "queryId": "dpq"}),
])
def test_no_acknowledgement_from_cgs_no_run(room, answer):
    publish_private(room)
    room.gov.spend_answer = answer
    response = room.run("woodgrove", "dpq", {"runId": "p3"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "PrivacyBudgetUnacknowledged"
    assert sink_files(room) == []


def test_a_dry_run_spends_nothing_and_a_plain_query_over_a_private_dataset_is_refused(room):
    publish_private(room)
    assert room.run("woodgrove", "dpq", {"runId": "dry", "dryRun": True}).json()["status"] == "validated"
    assert room.gov.spends == []
    ids = {n: i.member_id for n, i in room.identities.items()}
    room.gov.publish("plain", "query", {
        "inputDatasets": [{"datasetName": NW_DATASET, "viewName": "nw"}], "outputDataset": {"datasinkName": SINK},
        "segments": [{"executionSequence": 1, "sql": PRIVATE_SQL}]}, {ids["northwind"]: True})
    refused = room.run("woodgrove", "plain", {"runId": "plain1"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "PrivacyRefused"
    assert room.gov.spends == [] and sink_files(room) == []
