"""The analytics room for real (root): the demo's story and each refusal of the issue's "Bad input" list,
through the room's run API (TLS from the contract CA, the proxy's Rego, a member's signed request).

Every refusal is checked the way a member meets it: one line in the API's `{error: {code, message}}` (or
the CLI's stderr), an audit event in CGS, and nothing of the refused run in woodgrove's sink. The last test
is the demo's own story (examples/analytics/demo.py): its runs, the revocation, then the room down and the
sink downloaded as woodgrove does, with the room's signed manifest checked: only the complete results of
the runs that succeeded are there, each equal to sqlite's answer on the clear inputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sidecars.common.memberauth import MemberIdentity

pytestmark = [pytest.mark.root, pytest.mark.slow]

FINAL = ("succeeded", "validated", "refused", "failed", "revoked")
#: run ids of this module's runs that must have written nothing
REFUSED_RUNS: list[str] = []
SUCCEEDED_RUNS: dict[str, str] = {}  # run id -> query id


def one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message


def wait_for(room, run_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status, run = room.call("woodgrove", "GET", f"/runs/{run_id}")
        assert status == 200, run
        if run["status"] in FINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.3)


def audited(room, run_id: str, event: str) -> dict:
    found = [e for e in room.audit() if e.get("runId") == run_id and e.get("event") == event]
    assert found, f"no {event} event for run {run_id} in the audit trail"
    return found[-1]


def assert_refused_and_nothing_written(room, run_id: str, code: str, *named: str) -> str:
    """The run is refused with `code`, one line naming `named`, audited, and absent from the sink."""
    status, run = room.call("woodgrove", "GET", f"/runs/{run_id}")
    assert status == 200 and run["status"] == "refused", run
    assert run["error"]["code"] == code, run
    message = run["error"]["message"]
    one_line(message)
    for name in named:
        assert name in message, message
    event = audited(room, run_id, "analytics.run.refused")
    assert event["reason"] == message
    assert not [name for name in room.sink_objects() if name.startswith(f"{run_id}/")]
    REFUSED_RUNS.append(run_id)
    return message


def test_the_approved_query_runs_and_its_result_is_sqlites(analytics_room, tmp_path):
    room = analytics_room
    status, answer = room.call("woodgrove", "POST", "/queries/spend-by-age/run", {"runId": "story-1"})
    assert status == 202 and answer["runId"] == "story-1", answer
    run = wait_for(room, "story-1")
    assert run["status"] == "succeeded" and run["submittedBy"] == "woodgrove", run
    assert run["output"] == ["story-1/segment-1.csv"]
    assert set(run["timings"]) >= {"prepare", "views", "sql", "write"}
    # the same runId and body again is the same run; another body for it is a conflict
    assert room.call("woodgrove", "POST", "/queries/spend-by-age/run", {"runId": "story-1"})[0] == 200
    status, conflict = room.call("woodgrove", "POST", "/queries/spend-by-age/run", {"runId": "story-1", "dryRun": True})
    assert status == 409 and conflict["error"]["code"] == "RunIdConflict", conflict
    event = audited(room, "story-1", "analytics.run.succeeded")
    assert event["member"] == "woodgrove" and "northwind-sales" in event["datasets"], event  # northwind sees it
    SUCCEEDED_RUNS["story-1"] = "spend-by-age"


def test_a_group_below_the_threshold_is_suppressed_and_audited(analytics_room):
    room = analytics_room
    assert room.call("woodgrove", "POST", "/queries/spend-by-city/run", {"runId": "city-1"})[0] == 202
    run = wait_for(room, "city-1")
    assert run["status"] == "succeeded", run
    assert run["groupsSuppressed"] == 1 and run["rowsWritten"] == 4, run   # Walla Walla's 4 sales < K = 10
    assert audited(room, "city-1", "analytics.run.succeeded")["groupsSuppressed"] == 1
    SUCCEEDED_RUNS["city-1"] = "spend-by-city"


def test_an_unapproved_query_is_refused_and_cgs_names_the_owner_it_waits_for(analytics_room):
    room = analytics_room
    status, answer = room.call("woodgrove", "POST", "/queries/segment-mix/run", {"runId": "unapproved-1"})
    assert status == 404 and answer["error"]["code"] == "UnknownQuery", answer
    assert_refused_and_nothing_written(room, "unapproved-1", "UnknownQuery", "segment-mix", "have not all accepted")
    # the room reads accepted documents only; a member asks CGS whose accept is missing
    shown = room.analytics("woodgrove", "query", "show", "segment-mix").stdout
    assert "northwind accepted; woodgrove missing" in shown, shown


def test_sql_that_does_not_parse_is_refused_before_spark(analytics_room):
    room = analytics_room
    status, answer = room.call("woodgrove", "POST", "/queries/bad-sql/run", {"runId": "bad-sql-1"})
    assert status == 400 and answer["error"]["code"] == "SqlRefused", answer
    assert_refused_and_nothing_written(room, "bad-sql-1", "SqlRefused", "does not parse")


def test_a_query_over_a_dataset_that_does_not_exist(analytics_room, tmp_path):
    room = analytics_room
    document = json.loads((room.documents / "over-revocable.query.json").read_text())
    document["inputDatasets"][0]["datasetName"] = "no-such-dataset"
    path = tmp_path / "unknown.query.json"
    path.write_text(json.dumps(document))
    proposed = room.analytics("woodgrove", "query", "propose", str(path), "--id", "over-unknown", check=False)
    assert proposed.returncode != 0
    error = proposed.stderr.strip()
    one_line(error)
    assert "no-such-dataset" in error, error
    # nor can it be run: the room finds no such query
    status, answer = room.call("woodgrove", "POST", "/queries/over-unknown/run", {"runId": "unknown-1"})
    assert status == 404 and answer["error"]["code"] == "UnknownQuery", answer
    assert_refused_and_nothing_written(room, "unknown-1", "UnknownQuery", "over-unknown")


def test_a_query_over_a_revoked_dataset_is_refused_naming_who_revoked(analytics_room):
    room = analytics_room
    room.analytics("northwind", "dataset", "revoke", "northwind-revocable")
    status, answer = room.call("woodgrove", "POST", "/queries/over-revocable/run", {"runId": "revoked-1"})
    assert status == 403 and answer["error"]["code"] == "ConsentRevoked", answer
    assert_refused_and_nothing_written(room, "revoked-1", "ConsentRevoked", "northwind-revocable", "northwind")


def test_a_non_member_is_refused_before_anything_is_read(analytics_room, tmp_path):
    room = analytics_room
    stranger = MemberIdentity.create(tmp_path / "stranger", "stranger")
    status, answer = room.call(Path(stranger.directory), "POST", "/queries/spend-by-age/run", {"runId": "stranger-1"})
    assert status in (401, 403), answer
    one_line(answer["error"]["message"])
    # not a run of the room at all: no record, nothing in the sink
    assert room.call("woodgrove", "GET", "/runs/stranger-1")[0] == 404
    assert not [name for name in room.sink_objects() if name.startswith("stranger-1/")]
    assert not [event for event in room.audit() if event.get("runId") == "stranger-1"]
    # a member's request replayed is refused too (the signature was seen before)
    api = room.api("woodgrove")
    try:
        target = "/runs/story-1"
        header = api.identity.authorization("GET", target, b"")
        first = api._http.get(target, headers={"authorization": header})
        replayed = api._http.get(target, headers={"authorization": header})
    finally:
        api.close()
    assert first.status_code == 200 and replayed.status_code == 401, replayed.text
    one_line(replayed.json()["error"]["message"])


def test_a_dataset_whose_files_do_not_match_its_schema_is_refused(analytics_room):
    room = analytics_room
    status, answer = room.call("woodgrove", "POST", "/queries/over-misdescribed/run", {"runId": "mismatch-1"})
    assert status == 202, answer  # the files are read in the run phase
    run = wait_for(room, "mismatch-1")
    assert run["status"] == "refused" and run["error"]["code"] == "SchemaMismatch", run
    assert_refused_and_nothing_written(room, "mismatch-1", "SchemaMismatch", "northwind-misdescribed", "sales.csv",
                                       "town")


def test_the_proxy_lets_only_the_run_api_through(analytics_room):
    room = analytics_room
    api = room.api("woodgrove")
    try:
        for method, target in (("GET", "/status"), ("DELETE", "/runs/story-1"), ("GET", "/queries/x/run"),
                               ("POST", "/queries/a/b/run"), ("GET", "/runs/story-1/extra")):
            header = api.identity.authorization(method, target, b"")
            answer = api._http.request(method, target, headers={"authorization": header})
            assert answer.status_code == 403, (method, target, answer.status_code)
    finally:
        api.close()


def test_the_demo_story_then_the_sink_holds_only_complete_results_of_succeeded_runs(analytics_room):
    """Last: the demo's own steps 7-9 (examples/analytics/demo.py `story`) on this room: woodgrove's three
    queries, northwind's audit trail and revocation, the room down (the sink's manifest is signed then), the
    sink downloaded, checked and decrypted by woodgrove, its results compared with sqlite's."""
    room = analytics_room
    try:
        out = room.demo.story(room.room, room.where, room.ca)
    except SystemExit as exc:
        pytest.fail(str(exc))
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    succeeded = {**SUCCEEDED_RUNS, "spend-by-age-1": "spend-by-age", "spend-by-city-1": "spend-by-city"}
    # The private run's answer is noisy: the story itself checks that it released exactly its public keys.
    private = f"{room.demo.PRIVATE_QUERY}-1"
    assert written == sorted(f"{run_id}/segment-1.csv" for run_id in [*succeeded, private]), written
    assert REFUSED_RUNS, "the refusal tests did not run first"
    data = room.demo.demo_data
    threshold = room.demo.THRESHOLD
    for run_id, query in succeeded.items():
        sql = json.loads((room.demo.DOCUMENTS / f"{query}.query.json").read_text())["segments"][0]["sql"]
        _, rows = data.read_result_csv(out / run_id / "segment-1.csv")
        assert data.comparable(rows) == data.comparable(room.room.data.answer(sql, threshold)), run_id
