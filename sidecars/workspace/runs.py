"""Runs of a collaboration's queries, through the room's run API (`--room URL --contract-ca PEM`): each
request signed with the party's key, over TLS verified against the contract CA, so the workspace talks
only to an attested room. A result is downloaded from the party's datasink, checked against the manifest
the room signed, and decrypted here, on the party's machine."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..analytics.documents import Query, parse_query
from ..analytics.runcommands import RunApi
from ..common.auditchain import verify_chain
from ..common.errors import CcrError, RemoteServiceError
from ..volumes.manifest import SinkManifestMissing
from . import datacommands, views
from .collaborations import require_collaboration
from .deps import PartyDep, document_id, run_id
from .errors import FieldError
from .models import RUN_ID, RunRequest
from .party import Party

router = APIRouter(prefix="/api/collaborations/{collaboration_id}", tags=["runs"])
MAX_RESULT_ROWS = 1000
MAX_RESULT_BYTES = 8 * 1024 * 1024
#: how long a run's status read waits to connect to the room before taking it for down (it signs its sinks then)
ROOM_DOWN_AFTER_S = 5.0
#: how the room's audit event names a run's end (`analytics.run.<status>`)
FINAL_STATUSES = frozenset({"succeeded", "validated", "refused", "failed", "revoked"})


def _room(party: Party, timeout: float | httpx.Timeout = 30.0) -> RunApi:
    if party.room is None:
        raise FieldError.one(None, "this workspace knows no room: start it with --room URL --contract-ca PEM",
                             http_status=409)
    return RunApi(party.room.url, str(party.room.contract_ca), party.identity, timeout=timeout)


def _refusal(exc: CcrError) -> FieldError:
    # The room's refusal, as the room words it; a room that cannot be reached is a 502.
    return FieldError.one(None, exc.message, http_status=exc.http_status if 400 <= exc.http_status < 500 else 502)


def _call(party: Party, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    api = _room(party)
    try:
        return api.call(method, path, body)
    except CcrError as exc:
        raise _refusal(exc) from None
    finally:
        api.close()


def _room_read(party: Party, path: str) -> dict[str, Any] | None:
    """The room's answer to `GET path`, or None when no room answers at all (it is down: RunApi's transport
    failure, not an HTTP answer, which keeps its own refusal)."""
    # A short connect: a stopped room's address routes nowhere and would hold the page for the full 30 s. A
    # room that answers slowly is still waited for (the audit trail has no end of a run still going).
    api = _room(party, timeout=httpx.Timeout(30.0, connect=ROOM_DOWN_AFTER_S))
    try:
        return api.call("GET", path)[1]
    except RemoteServiceError as exc:
        if exc.status is None:
            return None
        raise _refusal(exc) from None
    except CcrError as exc:
        raise _refusal(exc) from None
    finally:
        api.close()


def _room_record(party: Party, run: str) -> dict[str, Any] | None:
    """The run as the room reports it, or None when the room is down."""
    return _room_read(party, f"/runs/{quote(run, safe='')}")


#: a run's state once it has ended, by its final status: `finished` when it produced what it was asked for
FINISHED_STATUSES = frozenset({"succeeded", "validated"})


def _verified_events(party: Party, contract: str, why: str) -> list[dict[str, Any]]:
    events, head = party.client().events(contract)
    if verify_chain(events, head):
        raise FieldError.one(None, f"the room does not answer and the collaboration's audit trail does not "
                                   f"verify: {why} not read from it", http_status=502)
    return events


def _audited_runs(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each run the room audited (only an attested room writes there), as its last audit event says: its end
    (`analytics.run.<final status>`), or only its acceptance when no end was written. Oldest first."""
    runs: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.get("data")
        name = str(data.get("event") or "") if isinstance(data, dict) else ""
        run = data.get("runId") if isinstance(data, dict) else None
        if not name.startswith("analytics.run.") or not isinstance(run, str) or not RUN_ID.fullmatch(run):
            continue
        status = name.removeprefix("analytics.run.")
        if status not in FINAL_STATUSES and run in runs:
            continue  # an end already recorded is never undone by a later acceptance
        reason = data.get("reason")
        runs[run] = {"runId": run, "queryId": data.get("queryId"), "status": status, "output": None,
                     "rowsWritten": data.get("rowsWritten"), "groupsSuppressed": data.get("groupsSuppressed"),
                     "error": {"code": None, "message": str(reason)[:500]} if reason else None}
    return runs


def _audited_record(party: Party, contract: str, run: str) -> dict[str, Any]:
    """The run as the stopped room recorded its end in the contract's audit trail (only an attested room
    writes there, and the chain must verify). Its outputs are not in it: a result is then every CSV under the
    run's folder of the download, which the room's signed manifest covers."""
    record = _audited_runs(_verified_events(party, contract, f"run {run!r} is")).get(run)
    if record is None or record["status"] not in FINAL_STATUSES:
        raise FieldError.one("runId", f"the room does not answer and its audit trail records no end of run "
                                      f"{run!r}", http_status=404)
    return record


def _with_state(record: dict[str, Any], room_up: bool) -> dict[str, Any]:
    """The record with its `state`: `running` while the room may still end it, else `finished` or `failed`
    (a run the room never ended before it stopped failed with it)."""
    status = str(record.get("status"))
    if status in FINISHED_STATUSES:
        return {**record, "state": "finished"}
    if status in FINAL_STATUSES:
        return {**record, "state": "failed"}
    if room_up:
        return {**record, "state": "running"}
    return {**record, "state": "failed", "error": record.get("error") or {
        "code": None, "message": "the room stopped before this run ended"}}


@router.post("/queries/{query_id}/run", status_code=202)
def start_run(collaboration_id: str, query_id: str, body: RunRequest, party: PartyDep) -> JSONResponse:
    require_collaboration(party, collaboration_id)
    request: dict[str, Any] = {}
    if body.runId:
        request["runId"] = body.runId
    if body.dryRun:
        request["dryRun"] = True
    if body.startDate:
        request["startDate"] = body.startDate.isoformat()
    if body.endDate:
        request["endDate"] = body.endDate.isoformat()
    status, answer = _call(party, "POST", f"/queries/{quote(document_id(query_id, 'queryId'), safe='')}/run",
                           request)
    return JSONResponse(answer, status_code=status)


def _room_runs(party: Party, query: str) -> list[dict[str, Any]] | None:
    """The room's runs of `query`, or None when the room is down."""
    answer = _room_read(party, f"/queries/{quote(query, safe='')}/runs")
    if answer is None:
        return None
    value = answer.get("value")
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


@router.get("/runs")
def list_runs(collaboration_id: str, party: PartyDep, query: str | None = None) -> dict[str, Any]:
    """The collaboration's runs (of `query`, if given), newest first. The room's own records while it answers;
    the audit trail governance holds otherwise, so the list outlives the room."""
    cid, _members, _me = require_collaboration(party, collaboration_id)
    wanted = document_id(query, "query") if query else None
    live = _room_runs(party, wanted) if wanted is not None and party.room is not None else None
    if live is not None:
        return {"value": [_with_state(r, room_up=True) for r in live]}
    audited = _audited_runs(_verified_events(party, cid, "its runs are")).values()
    runs = [r for r in audited if wanted is None or r["queryId"] == wanted]
    pending = [r["runId"] for r in runs if r["status"] not in FINAL_STATUSES]
    room_up = bool(pending) and party.room is not None and _room_answers(party, pending[0])
    return {"value": [_with_state(r, room_up) for r in reversed(runs)]}


def _room_answers(party: Party, run: str) -> bool:
    """Whether the room is still up, asked about a run it accepted and has not ended (it may still end it)."""
    try:
        return _room_record(party, run) is not None
    except FieldError:
        return True  # it answered, with a refusal of its own: it is up


@router.get("/runs/{run}")
def get_run(collaboration_id: str, run: str, party: PartyDep) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    run = run_id(run)
    # once the room is down (it signs its sinks' manifests then), the run's end as it audited it
    live = _room_record(party, run)
    return _with_state(live, room_up=True) if live is not None else _with_state(_audited_record(party, cid, run),
                                                                                room_up=False)


@router.get("/runs/{run}/result")
def get_result(collaboration_id: str, run: str, party: PartyDep) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    run = run_id(run)
    # The room signs its sinks' manifests when it stops: a result is usually read once it is down.
    record = _room_record(party, run) or _audited_record(party, cid, run)
    if record.get("status") != "succeeded":
        raise FieldError.one("runId", f"run {run!r} is {record.get('status')}: only a succeeded run has a result",
                             http_status=409)
    if party.spec is None or party.room is None:
        raise FieldError.one(None, "downloading a result needs the spec naming your datasink (start the "
                                   "workspace with --spec)", http_status=409)
    document = views.analytics_document(party.client(), cid, str(record.get("queryId")), "query")
    query = parse_query(document["data"])
    assert isinstance(query, Query)
    listed = record.get("output")
    with tempfile.TemporaryDirectory(prefix="ccr-workspace-") as tmp:
        try:
            datacommands.download(party, Path(tmp), party.spec, query.output_datasink, party.room.contract_ca,
                                  cid)
        except SinkManifestMissing:
            # Not a failure of this run: the room signs its sink's manifest when it stops, and until then a
            # download could not tell a complete result from one storage cut short or rolled back.
            raise FieldError.one(None, f"the result is published when the room stops and signs the manifest of "
                                       f"datasink {query.output_datasink!r}: read it after `ccr room down`",
                                 http_status=409) from None
        root = Path(tmp)
        if listed is None:
            listed = sorted(str(p.relative_to(root)) for p in (root / run).rglob("*.csv")) \
                if (root / run).is_dir() else []
        return table(root, [str(name) for name in listed])


def table(root: Path, outputs: list[str]) -> dict[str, Any]:
    """The run's CSV output files as one table; `series` names a first text column and numeric others, which
    the page can draw as a chart."""
    columns: list[str] = []
    rows: list[list[Any]] = []
    truncated, read = False, 0
    for name in outputs:
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file() or path.suffix != ".csv":
            continue
        read += path.stat().st_size
        if read > MAX_RESULT_BYTES:
            truncated = True
            break
        with path.open(newline="") as handle:
            reader = csv.reader(io.StringIO(handle.read()))
            header = next(reader, None)
            if header is None:
                continue
            columns = columns or header
            for row in reader:
                if len(rows) >= MAX_RESULT_ROWS:
                    truncated = True
                    break
                rows.append([_number(cell) for cell in row])
    numeric = [i for i in range(1, len(columns)) if rows and all(isinstance(r[i], (int, float))
                                                                  for r in rows if len(r) > i)]
    series = {"x": columns[0], "y": [columns[i] for i in numeric]} if columns and numeric else None
    return {"columns": columns, "rows": rows, "series": series, "truncated": truncated}


def _number(cell: str) -> Any:
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            continue
    return cell
