"""`GET …/runs/{run}/result` in-process: the room's run record and the collaboration's query stand in (the
room and CGS are the system test's), the download is `ccr data download`'s failure or output. A sink the room
has not signed yet (it signs when it stops) is a 409 naming the datasink, a sink whose manifest fails its
check keeps its own refusal, and a verified download is the table the page draws."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecars.common.memberauth import MemberIdentity
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
    record = {"runId": "run-1", "queryId": "segment-mix", "status": "succeeded",
              "output": ["part-0.csv"]}
    state: dict[str, Any] = {"record": record, "download": None, "calls": []}
    monkeypatch.setattr(runs, "require_collaboration", lambda _party, cid: (cid, [], "woodgrove"))
    monkeypatch.setattr(runs, "_call", lambda _party, method, path, body=None: (200, state["record"]))
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
    workspace["record"] = {**workspace["record"], "status": "failed"}
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 409 and only_error(answer)["field"] == "runId"
    assert workspace["calls"] == []


def test_a_verified_download_is_the_table_and_series_the_page_draws(workspace) -> None:
    def verified(output: Path) -> None:
        (output / "part-0.csv").write_text("segment,purchases\nfrequent,12\noccasional,7\n")
        (output / "not-an-output.csv").write_text("x,y\nsecret,1\n")

    workspace["download"] = verified
    answer = workspace["client"].get(RESULT)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"columns": ["segment", "purchases"], "rows": [["frequent", 12], ["occasional", 7]],
                             "series": {"x": "segment", "y": ["purchases"]}, "truncated": False}
