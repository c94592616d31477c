"""Datasets and queries of a collaboration (`/api/collaborations/{id}/datasets|queries`): read from CGS,
proposed and voted on with the party's own key. Every document is checked by the CLI's models (and a
query's SQL by the room's own guard) before anything is sent."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..analytics.datafiles import check_files
from ..analytics.documents import AnalyticsDocumentError, Dataset, Query, parse_dataset, parse_query
from ..analytics.sqlguard import check_segment
from ..cliargs import spec_variables
from ..common.errors import BadRequest, CcrError
from ..governance.member_client import CgsMemberClient
from ..spec import load_spec
from ..volumes.owner import files_to_publish
from . import datacommands, views
from .collaborations import require_collaboration
from .deps import PartyDep, document_id
from .errors import FieldError, document_problems, problem
from .jobs import Job
from .models import ConsentRequest, DatasetPublishRequest, QueryCheckRequest, QueryProposeRequest, VoteRequest
from .party import Party

router = APIRouter(prefix="/api/collaborations/{collaboration_id}", tags=["datasets and queries"])


def _text(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _dataset_document(document: dict[str, Any]) -> tuple[str, Dataset]:
    text = _text(document)
    try:
        return text, parse_dataset(text)
    except AnalyticsDocumentError as exc:
        raise FieldError(document_problems(exc, "document")) from None


def _query_document(document: dict[str, Any]) -> tuple[str, Query]:
    text = _text(document)
    try:
        return text, parse_query(text)
    except AnalyticsDocumentError as exc:
        raise FieldError(document_problems(exc, "document")) from None


def _sql_problems(query: Query, datasets: dict[str, Dataset]) -> list[dict[str, Any]]:
    """The room's own checks of each segment, against the accepted datasets' schemas."""
    found = []
    for index, source in enumerate(query.input_datasets):
        if source.dataset_name not in datasets:
            found.append(problem(f"document.inputDatasets.{index}.datasetName",
                                 f"{source.dataset_name!r} is not an accepted dataset of this collaboration"))
    if found:
        return found
    views_by_name = query.datasets_by_view(datasets)
    for index, segment in enumerate(query.segments):
        try:
            check_segment(segment.sql, views_by_name)
        except BadRequest as exc:
            found.append(problem(f"document.segments.{index}.sql", exc.message))
    return found


def _propose(client: CgsMemberClient, contract_id: str, document_id_: str, kind: str, text: str,
             vote: bool) -> dict[str, Any]:
    current = None
    try:
        current = client.contract_document(contract_id, document_id_).get("state")
    except CcrError as exc:
        if getattr(exc, "code", "") != "DocumentNotFound":
            raise
    if current in ("Accepted", "Proposed"):
        raise FieldError.one("document.name" if kind == "dataset" else "id",
                             f"{kind} {document_id_!r} is already {current.lower()}: an accepted document never "
                             "changes, publish it under a new name", http_status=409)
    proposal = client.propose_analytics_document(document_id_, contract_id, kind, text)
    if vote and proposal["proposalState"] == "Open":
        proposal = client.vote(proposal["proposalId"], True)
    return {"proposalId": proposal["proposalId"], "proposalState": proposal["proposalState"]}


# -- datasets -------------------------------------------------------------------------------------------
@router.get("/datasets")
def list_datasets(collaboration_id: str, party: PartyDep) -> dict[str, Any]:
    cid, _members, me = require_collaboration(party, collaboration_id)
    client = party.client()
    shown = (views.dataset_view(client, cid, d, me) for d in views.analytics_documents(client, cid, "dataset"))
    return {"value": [view for view in shown if view is not None]}


@router.get("/datasets/{name}")
def get_dataset(collaboration_id: str, name: str, party: PartyDep) -> dict[str, Any]:
    cid, _members, me = require_collaboration(party, collaboration_id)
    client = party.client()
    view = views.dataset_view(client, cid, views.analytics_document(client, cid, document_id(name, "datasetId"),
                                                                    "dataset"), me)
    if view is None:  # another party's unpublished dataset: as if it did not exist
        raise FieldError.one("datasetId", f"collaboration {cid!r} has no dataset {name!r}", http_status=404)
    return view


@router.post("/datasets", status_code=201, response_model=None)
def publish_dataset(collaboration_id: str, body: DatasetPublishRequest, party: PartyDep) -> Any:
    cid, _members, me = require_collaboration(party, collaboration_id)
    text, dataset = _dataset_document(body.document)
    if dataset.owner != me:
        raise FieldError.one("document.owner", f"you are {me}: only a dataset's owner publishes it, not "
                             f"{dataset.owner!r}", http_status=403)
    if body.data is None:
        answer = _propose(party.client(), cid, dataset.name, "dataset", text, body.vote)
        return {**answer, "dataset": views.dataset_view(party.client(), cid, party.client().contract_document(
            cid, dataset.name), me)}
    folder, spec = _publish_inputs(party, body)
    job = party.jobs.start("dataset-publish", lambda job: _publish(job, party, cid, text, dataset, folder, spec,
                                                                   body.vote))
    return JSONResponse(job.view(), status_code=202)


def _publish_inputs(party: Party, body: DatasetPublishRequest) -> tuple[Path, Path]:
    assert body.data is not None
    folder = Path(body.data.folder)
    if not folder.is_dir():
        raise FieldError.one("data.folder", f"{body.data.folder[:200]} is not a folder on this machine")
    spec = Path(body.data.spec) if body.data.spec else party.spec
    if spec is None:
        raise FieldError.one("data.spec", "which spec's datasource receives the files? (or start the workspace "
                                          "with --spec)")
    if not spec.is_file():
        raise FieldError.one("data.spec", f"{str(spec)[:200]}: no such file")
    return folder, spec


def _publish(job: Job, party: Party, contract_id: str, text: str, dataset: Dataset, folder: Path, spec_path: Path,
             vote: bool) -> dict[str, Any]:
    job.report(2, "checking the files against the schema")
    files = files_to_publish(folder)
    try:
        check_files(dataset, files, folder)
    except CcrError as exc:
        raise FieldError.one("data.folder", exc.message) from None
    args = argparse.Namespace(endpoints=party.endpoints, var=party.var)
    spec = load_spec(spec_path, variables=spec_variables(args))
    try:
        volume = spec.volume(dataset.store)
    except KeyError:
        raise FieldError.one("document.store", f"{spec_path} has no datasource {dataset.store!r}") from None
    if getattr(volume.store, "container", None) != dataset.container:
        raise FieldError.one("document.container", f"the spec's datasource {dataset.store!r} is container "
                             f"{getattr(volume.store, 'container', None)!r}, not {dataset.container!r}")
    if volume.encryption.mode.value != dataset.encryption.mode:
        raise FieldError.one("document.encryption.mode", f"the spec's datasource {dataset.store!r} is "
                             f"{volume.encryption.mode.value}, not {dataset.encryption.mode}")
    job.report(10, f"encrypting and uploading {len(files)} file(s)")

    def uploaded(done: int, total: int) -> None:
        # 10% .. 90% of the bar is the upload, by bytes
        job.report(10 + (80 * done // total if total else 80), f"encrypting and uploading: {done} of {total} bytes")

    datacommands.publish(party, folder, spec_path, dataset.store, uploaded)
    job.report(90, "proposing the dataset document")
    answer = _propose(party.client(), contract_id, dataset.name, "dataset", text, vote)
    return {**answer, "files": len(files)}


@router.post("/datasets/{name}/consent")
def dataset_consent(collaboration_id: str, name: str, body: ConsentRequest, party: PartyDep) -> dict[str, Any]:
    return _consent(party, collaboration_id, document_id(name, "datasetId"), "dataset", body.enabled)


def _consent(party: Party, collaboration_id: str, doc_id: str, kind: str, enabled: bool) -> dict[str, Any]:
    cid, _members, me = require_collaboration(party, collaboration_id)
    client = party.client()
    document = views.analytics_document(client, cid, doc_id, kind)
    if kind == "dataset" and views.dataset_view(client, cid, document, me) is None:
        raise FieldError.one("datasetId", f"collaboration {cid!r} has no dataset {doc_id!r}", http_status=404)
    client.set_document_execution(cid, doc_id, enabled)
    status = client.document_status(cid, doc_id)
    return {"status": status.get("status"), "reason": (status.get("reason") or {}).get("message"),
            "revokedBy": status.get("revokedBy", [])}


# -- queries --------------------------------------------------------------------------------------------
@router.get("/queries")
def list_queries(collaboration_id: str, party: PartyDep) -> dict[str, Any]:
    cid, members, _me = require_collaboration(party, collaboration_id)
    client = party.client()
    names, datasets = views.names_by_id(members), views.accepted_datasets(client, cid)
    return {"value": [views.query_view(client, cid, d, names, datasets)
                      for d in views.analytics_documents(client, cid, "query")]}


@router.get("/queries/{query_id}")
def get_query(collaboration_id: str, query_id: str, party: PartyDep) -> dict[str, Any]:
    cid, members, _me = require_collaboration(party, collaboration_id)
    client = party.client()
    document = views.analytics_document(client, cid, document_id(query_id, "queryId"), "query")
    return views.query_view(client, cid, document, views.names_by_id(members), views.accepted_datasets(client, cid))


@router.post("/queries:check")
def check_query(collaboration_id: str, body: QueryCheckRequest, party: PartyDep) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    try:
        _, query = _query_document(body.document)
    except FieldError as exc:
        return {"ok": False, "errors": exc.problems}
    found = _sql_problems(query, views.accepted_datasets(party.client(), cid))
    return {"ok": not found, "errors": found}


@router.post("/queries", status_code=201)
def propose_query(collaboration_id: str, body: QueryProposeRequest, party: PartyDep) -> dict[str, Any]:
    cid, members, _me = require_collaboration(party, collaboration_id)
    text, query = _query_document(body.document)
    client = party.client()
    datasets = views.accepted_datasets(client, cid)
    found = _sql_problems(query, datasets)
    if found:
        raise FieldError(found)
    answer = _propose(client, cid, body.id, "query", text, body.vote)
    document = client.contract_document(cid, body.id)
    return {**answer, "query": views.query_view(client, cid, document, views.names_by_id(members), datasets)}


@router.post("/queries/{query_id}/vote")
def vote_query(collaboration_id: str, query_id: str, body: VoteRequest, party: PartyDep) -> dict[str, Any]:
    cid, _members, _me = require_collaboration(party, collaboration_id)
    client = party.client()
    document = views.analytics_document(client, cid, document_id(query_id, "queryId"), "query")
    if document.get("state") != "Proposed" or not document.get("proposalId"):
        raise FieldError.one("queryId", f"query {query_id!r} is {document.get('state')}: there is no open proposal "
                             "to vote on", http_status=409)
    proposal = client.vote(document["proposalId"], body.ballot == "accept")
    return {"proposalId": proposal["proposalId"], "proposalState": proposal["proposalState"]}


@router.post("/queries/{query_id}/consent")
def query_consent(collaboration_id: str, query_id: str, body: ConsentRequest, party: PartyDep) -> dict[str, Any]:
    return _consent(party, collaboration_id, document_id(query_id, "queryId"), "query", body.enabled)
