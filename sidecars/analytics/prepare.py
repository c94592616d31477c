"""The prepare phase of a run: everything decided before Spark sees the query.

In order, each refusal one line naming what failed: the query document (accepted, labelled a query, parses),
each input dataset document (accepted, labelled a dataset, named as its id), the approval rule over the
query's final votes (the owners of its inputs decide), the execution consent of the contract, the query and
every dataset, the SQL guards over every segment, the requested dates, and the output sink being there.
What passes is a `Prepared` run the engine can take as it is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import BadRequest, CcrError
from ..common.governance_client import ConsentStatus
from . import approval, dp, sqlguard
from .auth import Member
from .documents import Dataset, Query, parse_dataset, parse_query, privacy_spend
from .runs import RunRequest


class RunRefused(CcrError):
    """A run the room will not start; `code` and `http_status` say why (see the callers)."""


@dataclass(frozen=True)
class Prepared:
    query_id: str
    query: Query
    #: dataset name → document
    datasets: dict[str, Dataset]
    #: view name (as the query spells it) → dataset name
    views: dict[str, str]
    sink: Path
    date_range: tuple[dt.date | None, dt.date | None]
    #: what one run spends from each private dataset's budget (millionths of ε); empty for a plain query
    privacy: dict[str, int] = field(default_factory=dict)


class Governance:
    """What the prepare phase asks governance (`roomgov.AnalyticsGovernance` in the app)."""

    def member_document(self, document_id: str) -> dict[str, Any] | None: ...
    def document_consent(self, document_id: str) -> ConsentStatus: ...
    def contract_consent(self) -> ConsentStatus: ...


def parse_date(value: str | None, field: str) -> dt.date | None:
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field} must be a date YYYY-MM-DD", code="InvalidDate") from None


def date_range(request: RunRequest) -> tuple[dt.date | None, dt.date | None]:
    start, end = parse_date(request.start_date, "startDate"), parse_date(request.end_date, "endDate")
    if start and end and start > end:
        raise BadRequest(f"startDate {start} is after endDate {end}", code="InvalidDate")
    return start, end


def _accepted_document(gov: Governance, document_id: str, kind: str) -> tuple[dict[str, Any], str]:
    """The accepted document `document_id` of this kind, and its text (its `data`)."""
    document = gov.member_document(document_id)
    missing_code = "UnknownQuery" if kind == "query" else "UnknownDataset"
    if document is None:
        # The room reads accepted documents only (as CGS serves them to an attested room): a query still
        # waiting for an owner's vote looks the same as none, and the caller must hear both possibilities.
        reason = ("is not an accepted query of this contract: there is none, or the owners of the data it reads "
                  "have not all accepted it (`ccr analytics query show` says whose accept is missing)"
                  if kind == "query" else "is not an accepted dataset of this contract")
        raise RunRefused(f"{kind} {document_id!r} {reason}", code=missing_code,
                         http_status=404 if kind == "query" else 400)
    labels = document.get("labels") if isinstance(document.get("labels"), dict) else {}
    if labels.get("kind") != kind:
        raise RunRefused(f"document {document_id!r} is not a {kind} document", code=missing_code,
                         http_status=404 if kind == "query" else 400)
    if document.get("state") != "Accepted":
        raise RunRefused(f"{kind} {document_id!r} is not accepted (state {str(document.get('state'))[:20]})",
                         code="DocumentNotAccepted", http_status=403)
    data = document.get("data")
    if not isinstance(data, str):
        raise RunRefused(f"{kind} {document_id!r} carries no document text", code="InvalidAnalyticsDocument",
                         http_status=400)
    return document, data


def ballots_of(document: Mapping[str, Any] | None, members_by_id: Mapping[str, Member]) -> dict[str, approval.Ballot]:
    """The final votes of the query document, by member name. A vote by an id that is not an Active member
    counts for nothing (its name is unknown, so it cannot be an owner's)."""
    votes = (document or {}).get("finalVotes") or []
    if isinstance(votes, Mapping):  # the proposal view's shape: {memberId: bool}
        votes = [{"memberId": member_id, "vote": vote} for member_id, vote in votes.items()]
    ballots: dict[str, approval.Ballot] = {}
    for vote in votes if isinstance(votes, list) else ():
        if not isinstance(vote, Mapping):
            continue
        member = members_by_id.get(str(vote.get("memberId")))
        if member is None:
            continue
        # only a JSON true is an accept; anything else from a member reads as a reject
        ballots[member.name] = "accept" if vote.get("vote") is True else "reject"
    return ballots


def _require_enabled(status: ConsentStatus, what: str) -> None:
    if not status.enabled:
        reason = status.reason_message or status.reason_code or "disabled"
        known = ("ConsentRevoked", "DocumentNotAccepted")
        code = status.reason_code if status.reason_code in known else "ConsentRevoked"
        raise RunRefused(f"execution consent for {what} is {status.status}: {reason}", code=code, http_status=403)


def prepare(gov: Governance, query_id: str, request: RunRequest, members_by_id: Mapping[str, Member],
            mount_root: Path, reads: list[str] | None = None) -> Prepared:
    """`reads` gets the names of the datasets the query reads as soon as they are known, so that a refusal
    after that point is audited with them (an owner finds refused attempts on its data too)."""
    query_document, query_text = _accepted_document(gov, query_id, "query")
    query = parse_query(query_text)
    if reads is not None:
        reads.extend(dict.fromkeys(i.dataset_name for i in query.input_datasets))
    datasets: dict[str, Dataset] = {}
    for wanted in query.input_datasets:
        if wanted.dataset_name in datasets:
            continue
        dataset = parse_dataset(_accepted_document(gov, wanted.dataset_name, "dataset")[1])
        if dataset.name != wanted.dataset_name:
            # a document filed under one id but naming another dataset must not stand in for it
            raise RunRefused(f"document {wanted.dataset_name!r} describes dataset {dataset.name!r}",
                             code="InvalidAnalyticsDocument", http_status=400)
        datasets[dataset.name] = dataset

    decision = approval.decide(query, datasets, ballots_of(query_document, members_by_id))
    if not decision.approved:
        raise RunRefused(f"query {query_id!r} is {decision.reason()}", code="QueryNotApproved", http_status=403)

    _require_enabled(gov.contract_consent(), "the contract")
    _require_enabled(gov.document_consent(query_id), f"query {query_id!r}")
    for name in datasets:
        _require_enabled(gov.document_consent(name), f"dataset {name!r}")

    privacy = privacy_spend(query, datasets)
    views = query.datasets_by_view(datasets)
    for segment in sorted(query.segments, key=lambda s: s.execution_sequence):
        try:
            if segment.private:
                dp.plan_private(segment, views)
            else:
                sqlguard.check_segment(segment.sql, views)
        except BadRequest as exc:
            raise RunRefused(f"segment {segment.execution_sequence}: {exc.message}", code=exc.code,
                             http_status=400) from None

    dates = date_range(request)
    sink = mount_root / query.output_datasink
    if not sink.is_dir() or not os.access(sink, os.W_OK):
        raise RunRefused(f"the output datasink {query.output_datasink!r} is not mounted at {sink}",
                         code="DatasinkNotMounted", http_status=409)
    return Prepared(query_id, query, datasets, {i.view_name: i.dataset_name for i in query.input_datasets},
                    sink, dates, privacy)


def parse_run_body(body: bytes) -> dict[str, Any]:
    """The run request's JSON body: an object with only runId (string), dryRun (bool), startDate, endDate
    (strings); an empty body is `{}`."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not JSON", code="InvalidRequestBody") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object", code="InvalidRequestBody")
    types = {"runId": str, "dryRun": bool, "startDate": str, "endDate": str}
    for key, item in value.items():
        if key not in types:
            raise BadRequest(f"unknown field {str(key)[:40]!r} (expected runId, dryRun, startDate, endDate)",
                             code="InvalidRequestBody")
        if item is not None and not isinstance(item, types[key]):
            raise BadRequest(f"{key} must be a {types[key].__name__}", code="InvalidRequestBody")
    return value

