"""The run list once the room is down: built from the runs the room audited, each `finished` or `failed`;
a run the room accepted and never ended failed with it; audit data that is not a run's is skipped."""

from __future__ import annotations

from sidecars.workspace.runs import _audited_runs, _with_state


def event(name: str, run: object, **data: object) -> dict:
    return {"scope": "analytics", "data": {"event": name, "runId": run, "queryId": "q1", **data}}


EVENTS = [
    event("analytics.run.accepted", "r1"), event("analytics.run.succeeded", "r1", rowsWritten=3),
    event("analytics.run.accepted", "r2"), event("analytics.run.refused", "r2", reason="woodgrove did not accept"),
    event("analytics.run.accepted", "r3"),
    event("analytics.run.succeeded", "../etc", rowsWritten=1),  # not a run id: never listed
    event("analytics.run.succeeded", 7), {"scope": "cgs", "data": "not an object"},
    {"scope": "cgs", "data": {"action": "vote", "runId": "r9"}},  # not the room's run event
    event("analytics.run.accepted", "r1"),  # a replayed acceptance does not undo r1's end
]


def test_the_list_outlives_the_room_each_run_finished_or_failed():
    runs = _audited_runs(EVENTS)
    assert list(runs) == ["r1", "r2", "r3"]
    states = {run: _with_state(record, room_up=False) for run, record in runs.items()}
    assert (states["r1"]["status"], states["r1"]["state"], states["r1"]["rowsWritten"]) == ("succeeded", "finished", 3)
    assert states["r2"]["state"] == "failed" and states["r2"]["error"]["message"] == "woodgrove did not accept"
    assert states["r3"]["state"] == "failed"
    assert states["r3"]["error"]["message"] == "the room stopped before this run ended"


def test_a_run_not_ended_while_the_room_is_up_is_running():
    assert _with_state(_audited_runs(EVENTS)["r3"], room_up=True)["state"] == "running"
    assert _with_state({"status": "validated"}, room_up=True)["state"] == "finished"
    assert _with_state({"status": "revoked"}, room_up=True)["state"] == "failed"
