"""`GET …/runs/{run}/result` in-process: the room's run record and the collaboration's query stand in (the
room and CGS are the system test's), the download is `ccr data download`'s failure or output. A sink the room
has not signed yet (it signs when it stops) is a 409 naming the datasink, a sink whose manifest fails its
check keeps its own refusal, and a verified download is the table the page draws. Once the room is down (no
answer at all, not a refusal), the run's end is read from the verified audit trail the room wrote."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecars.analytics.runcommands import RunApi
from sidecars.common.auditchain import GENESIS, event_hash
from sidecars.common.errors import CcrError, RemoteServiceError
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.tls import LocalCA
from sidecars.volumes import manifest as mf
from sidecars.workspace import datacommands, runs, views
from sidecars.workspace.app import build_app
from sidecars.workspace.party import Party, RoomEndpoint

BASE = "http://127.0.0.1:8765"
REPO = Path(__file__).resolve().parents[3]
QUERY_TEXT = (REPO / "examples/analytics/documents/segment-mix.query.json").read_text()
QUERY = json.loads(QUERY_TEXT)
RESULT = "/api/collaborations/collab/runs/run-1/result"


def only_error(answer) -> dict[str, Any]:
    body = answer.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert set(error) == {"field", "message"} and "\n" not in error["message"]
    return error


class Room:
    """The room's run API as RunApi reaches it: the record, an HTTP refusal, or nothing at all (down)."""

    answer: Any = None

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def call(self, method: str, path: str, _body: Any = None) -> tuple[int, dict[str, Any]]:
        assert (method, path) == ("GET", "/runs/run-1")
        if isinstance(Room.answer, Exception):
            raise Room.answer
        return 200, Room.answer

    def close(self) -> None:
        pass


def chain(*datas: dict) -> list[dict]:
    events, prev = [], GENESIS
    for seqno, data in enumerate(datas, start=1):
        stamp = str(1764900000000 + seqno)
        digest = event_hash(prev, seqno, stamp, "analytics", "audit", data)
        events.append({"seqno": seqno, "timestamp": stamp, "scope": "analytics", "id": "audit", "data": data,
                       "prev_hash": prev, "hash": digest})
        prev = digest
    return events


class Cgs:
    """The contract's audit trail, as `CgsMemberClient.events` returns it."""

    def __init__(self) -> None:
        self.trail: list[dict] = []

    def events(self, _contract: str) -> tuple[list[dict], dict]:
        last = self.trail[-1] if self.trail else {"seqno": 0, "hash": GENESIS}
        return self.trail, {"seqno": last["seqno"], "hash": last["hash"]}

    def close(self) -> None:
        pass


ROOM_DOWN = RemoteServiceError("analytics", "https://10.0.0.1:8443 unreachable: connection refused")


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> dict[str, Any]:
    MemberIdentity.create(tmp_path / "me", "me")
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>workspace</title>")
    spec = tmp_path / "spec.yaml"
    spec.write_text("the download is replaced below; only its path is passed\n")
    party = Party(cgs_url="https://127.0.0.1:1", ca_bundle=None, identity_dir=tmp_path / "me", mode="certificate",
                  room=RoomEndpoint("https://127.0.0.1:1", tmp_path / "contract-ca.pem"), spec=spec)
    party.base_url = BASE
    cgs = Cgs()
    party._client = cgs  # type: ignore[assignment]  # the audit trail stands in for CGS
    Room.answer = {"runId": "run-1", "queryId": "segment-mix", "status": "succeeded",
                   "output": ["run-1/segment-1.csv"]}
    state: dict[str, Any] = {"download": None, "calls": [], "cgs": cgs}
    monkeypatch.setattr(runs, "RunApi", Room)
    monkeypatch.setattr(runs, "require_collaboration", lambda _party, cid: (cid, [], "woodgrove"))
    monkeypatch.setattr(views, "analytics_document", lambda *_args: {"data": QUERY_TEXT})

    def download(_party, output: Path, _spec, volume: str, _ca, contract: str) -> None:
        state["calls"].append((volume, contract))
        state["download"](output)

    monkeypatch.setattr(datacommands, "download", download)
    state["client"] = TestClient(build_app(party, static), base_url=BASE, raise_server_exceptions=False)
    return state


def unsigned_sink(_output: Path) -> None:
    # what `ccr data download` raises for a datasink without .ccr/manifest.json (commands._checked_manifest)
    mf.signed_sink(None, b"", contract="collab", account="acct", container="results", where="acct/results")


def test_a_result_before_the_room_signed_its_sink_is_409_naming_the_datasink(workspace) -> None:
    workspace["download"] = unsigned_sink
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 409
    error = only_error(answer)
    sink = QUERY["outputDataset"]["datasinkName"]
    assert workspace["calls"] == [(sink, "collab")]
    assert error["field"] is None
    assert f"datasink {sink!r}" in error["message"] and "when the room stops" in error["message"]


@pytest.mark.parametrize("refusal", [
    mf.ManifestRefused("acct/results: the manifest's signature does not verify (altered after signing)"),
    mf.ManifestRefused("acct/results: object part-0.csv named by the manifest is missing (deleted)"),
])
def test_a_sink_whose_manifest_fails_its_check_keeps_its_own_refusal(workspace, refusal) -> None:
    """Tampering is never worded as "wait for the room to stop": only a missing manifest is."""
    def tampered(_output: Path) -> None:
        raise refusal

    workspace["download"] = tampered
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 422
    assert only_error(answer)["message"] == refusal.message


def test_an_emptied_manifest_is_tampering_not_an_unsigned_sink(workspace) -> None:
    def emptied(_output: Path) -> None:
        mf.signed_sink(b"", b"", contract="collab", account="acct", container="results", where="acct/results")

    workspace["download"] = emptied
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 422 and "when the room stops" not in only_error(answer)["message"]


def test_a_run_that_did_not_succeed_has_no_result_and_nothing_is_downloaded(workspace) -> None:
    Room.answer = {**Room.answer, "status": "failed"}
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 409 and only_error(answer)["field"] == "runId"
    assert workspace["calls"] == []


def test_a_verified_download_is_the_table_and_series_the_page_draws(workspace) -> None:
    def verified(output: Path) -> None:
        (output / "run-1").mkdir()
        (output / "run-1" / "segment-1.csv").write_text("segment,purchases\nfrequent,12\noccasional,7\n")
        (output / "run-2").mkdir()
        (output / "run-2" / "segment-1.csv").write_text("x,y\nanother run,1\n")

    workspace["download"] = verified
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"columns": ["segment", "purchases"], "rows": [["frequent", 12], ["occasional", 7]],
                             "series": {"x": "segment", "y": ["purchases"]}, "truncated": False}


SUCCEEDED = {"event": "analytics.run.succeeded", "queryId": "segment-mix", "runId": "run-1", "member": "woodgrove",
             "rowsWritten": 2, "groupsSuppressed": 0}


def test_once_the_room_is_down_the_run_and_its_result_are_read_from_the_audit_trail(workspace) -> None:
    """The room signs its sink when it stops: then no room answers, the run's end is in the verified audit
    trail and the result is the run's folder of the verified download."""
    Room.answer = ROOM_DOWN
    workspace["cgs"].trail = chain({"event": "analytics.run.accepted", "queryId": "segment-mix", "runId": "run-1"},
                                   SUCCEEDED, {**SUCCEEDED, "runId": "run-2"})
    run = workspace["client"].get(RESULT.removesuffix("/result"))
    assert run.status_code == 200 and run.json()["status"] == "succeeded" and run.json()["queryId"] == "segment-mix"
    test_a_verified_download_is_the_table_and_series_the_page_draws(workspace)


def test_a_down_room_with_a_tampered_audit_trail_locates_nothing(workspace) -> None:
    Room.answer = ROOM_DOWN
    trail = chain(SUCCEEDED)
    trail[0]["data"] = {**SUCCEEDED, "queryId": "another-query"}  # rewritten after the room wrote it
    workspace["cgs"].trail = trail
    workspace["download"] = lambda _output: pytest.fail("downloaded on a tampered trail's word")
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 502 and "does not verify" in only_error(answer)["message"]


def test_a_down_room_whose_trail_has_no_end_of_the_run_is_404(workspace) -> None:
    Room.answer = ROOM_DOWN
    workspace["cgs"].trail = chain({"event": "analytics.run.accepted", "queryId": "segment-mix", "runId": "run-1"})
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 404 and only_error(answer)["field"] == "runId"
    assert workspace["calls"] == []


def test_a_room_that_answers_with_a_refusal_is_not_taken_for_down(workspace) -> None:
    Room.answer = CcrError("RunNotFound: no run 'run-1'", code="RunNotFound", http_status=404)
    workspace["cgs"].trail = chain(SUCCEEDED)
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 404 and "RunNotFound" in only_error(answer)["message"]
    assert workspace["calls"] == []


def unreachable_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A loopback listener whose backlog is full: a new connection hangs unanswered, as one to a stopped
    room's address does (its SYN goes nowhere)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.1)
    return listener, fillers


def test_a_room_that_cannot_be_connected_to_is_taken_for_down_within_its_short_wait(workspace, tmp_path,
                                                                                     monkeypatch) -> None:
    """The real RunApi: the status read gives up connecting after ROOM_DOWN_AFTER_S, not the 30 s of other
    calls, and the run comes from the audit trail."""
    monkeypatch.setattr(runs, "RunApi", RunApi)
    monkeypatch.setattr(runs, "ROOM_DOWN_AFTER_S", 0.3)
    ca = LocalCA.create(tmp_path / "ca")
    listener, fillers = unreachable_listener()
    try:
        target = f"https://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setattr(runs, "_room", lambda p, timeout=30.0: RunApi(target, str(ca.cert_file), p.identity,
                                                                            timeout=timeout))
        workspace["cgs"].trail = chain(SUCCEEDED)
        started = time.monotonic()
        answer = workspace["client"].get(RESULT.removesuffix("/result"))
        assert time.monotonic() - started < 5
    finally:
        for sock in (listener, *fillers):
            sock.close()
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
