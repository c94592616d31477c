"""CGS's answers in the workspace's shapes (API.md): collaborations, members, datasets and queries as one
party sees them. A dataset another party has not published yet (its document is not accepted) is not
shown: a workspace never shows another party's unpublished data."""

from __future__ import annotations

import json
from typing import Any

from ..analytics import approval
from ..analytics.documents import AnalyticsDocumentError, Dataset, Query, parse_dataset, parse_query
from ..common.errors import BadRequest
from ..governance.member_client import CgsMemberClient, CgsRequestFailed
from .errors import FieldError

BALLOT_STATES = {"accept": "accepted", "reject": "rejected", "revoke": "revoked"}


def names_by_id(members: list[dict[str, Any]]) -> dict[str, str]:
    return {m["memberId"]: (m.get("memberData") or {}).get("identifier") or m["memberId"][:12] for m in members}


def contract_member_names(contract: dict[str, Any], members: list[dict[str, Any]]) -> list[str]:
    """The names the contract says are its members (a ccr spec's `contract.members`); a contract that names
    none is every member's that is not an operator (CGS's own rule, see the stand-in's store)."""
    data = contract.get("data")
    named = (data.get("contract") or {}).get("members") if isinstance(data, dict) else None
    if isinstance(named, list) and named and all(isinstance(n, str) for n in named):
        return list(named)
    return [(m.get("memberData") or {}).get("identifier", "") for m in members
            if not (m.get("memberData") or {}).get("isOperator")]


def collaboration(client: CgsMemberClient, contract_id: str, members: list[dict[str, Any]],
                  room_url: str | None) -> dict[str, Any]:
    contract = client.contract(contract_id)
    consent = client.check_status(contract_id, "execution") if contract.get("state") == "Accepted" else {
        "status": "disabled", "reason": {"message": "the contract is not accepted yet"}}
    return {"id": contract_id, "state": contract.get("state"), "version": contract.get("version"),
            "members": contract_member_names(contract, members),
            "consent": {"execution": consent.get("status"), "reason": (consent.get("reason") or {}).get("message")},
            "room": {"url": room_url, "configured": room_url is not None}}


def member_view(member: dict[str, Any], me: str) -> dict[str, Any]:
    data = member.get("memberData") or {}
    return {"memberId": member["memberId"], "name": data.get("identifier"), "status": member.get("status"),
            "identity": data.get("identity"), "isMe": member["memberId"] == me}


def _document_data(document: dict[str, Any]) -> Any:
    data = document.get("data")
    try:
        return json.loads(data) if isinstance(data, str) else data
    except ValueError:
        return None


def _parsed(document: dict[str, Any], kind: str) -> Dataset | Query | None:
    """The document's content, None when it does not parse (CGS refuses such proposals; a draft may be so)."""
    try:
        text = document.get("data")
        return parse_dataset(text) if kind == "dataset" else parse_query(text)  # type: ignore[arg-type]
    except (AnalyticsDocumentError, TypeError):
        return None


def analytics_documents(client: CgsMemberClient, contract_id: str, kind: str) -> list[dict[str, Any]]:
    found = []
    for document_id in client.contract_documents(contract_id):
        document = client.contract_document(contract_id, document_id)
        if (document.get("labels") or {}).get("kind") == kind:
            found.append(document)
    return found


def analytics_document(client: CgsMemberClient, contract_id: str, document_id: str, kind: str) -> dict[str, Any]:
    try:
        document = client.contract_document(contract_id, document_id)
    except CgsRequestFailed as exc:
        if exc.code == "DocumentNotFound" or exc.http_status == 404:
            raise FieldError.one(f"{kind}Id", f"collaboration {contract_id!r} has no {kind} {document_id!r}",
                                 http_status=404) from None
        raise
    if (document.get("labels") or {}).get("kind") != kind:
        raise FieldError.one(f"{kind}Id", f"collaboration {contract_id!r} has no {kind} {document_id!r}",
                             http_status=404)
    return document


def _consent(client: CgsMemberClient, contract_id: str, document: dict[str, Any]) -> dict[str, Any] | None:
    if document.get("state") != "Accepted":
        return None
    status = client.document_status(contract_id, document["id"])
    return {"status": status.get("status"), "reason": (status.get("reason") or {}).get("message"),
            "revokedBy": status.get("revokedBy", [])}


def dataset_view(client: CgsMemberClient, contract_id: str, document: dict[str, Any], me: str | None
                 ) -> dict[str, Any] | None:
    """The dataset as the party sees it; None when it must not see it (another party's, not yet accepted)."""
    content = _parsed(document, "dataset")
    owner = content.owner if isinstance(content, Dataset) else None
    mine = owner is not None and owner == me
    if document.get("state") != "Accepted" and not mine:
        return None
    return {"id": document.get("id"), "state": document.get("state"), "proposalId": document.get("proposalId") or None,
            "owner": owner, "mine": mine, "dataset": _document_data(document),
            "consent": _consent(client, contract_id, document)}


def accepted_datasets(client: CgsMemberClient, contract_id: str) -> dict[str, Dataset]:
    datasets = {}
    for document in analytics_documents(client, contract_id, "dataset"):
        content = _parsed(document, "dataset")
        if document.get("state") == "Accepted" and isinstance(content, Dataset):
            datasets[content.name] = content
    return datasets


def _ballots(client: CgsMemberClient, document: dict[str, Any], names: dict[str, str]) -> dict[str, approval.Ballot]:
    if document.get("state") == "Accepted":
        votes = {v["memberId"]: v["vote"] for v in document.get("finalVotes") or []}
    elif document.get("state") == "Proposed" and document.get("proposalId"):
        votes = client.proposal(document["proposalId"]).get("finalVotes") or {}
    else:
        votes = {}
    return {names.get(member, member[:12]): "accept" if vote else "reject" for member, vote in votes.items()}


def query_view(client: CgsMemberClient, contract_id: str, document: dict[str, Any], names: dict[str, str],
               datasets: dict[str, Dataset]) -> dict[str, Any]:
    view: dict[str, Any] = {"id": document.get("id"), "state": document.get("state"),
                            "proposalId": document.get("proposalId") or None, "query": _document_data(document),
                            "owners": [], "approval": None, "ignoredVotes": [],
                            "consent": _consent(client, contract_id, document)}
    query = _parsed(document, "query")
    if not isinstance(query, Query):
        view["approval"] = "the query document does not parse"
        return view
    ballots: dict[str, str] = dict(_ballots(client, document, names))
    for member in (view["consent"] or {}).get("revokedBy", []):
        ballots[member] = "revoke"
    try:
        decision = approval.decide(query, datasets, ballots)  # type: ignore[arg-type]
    except BadRequest as exc:  # a dataset it reads is not accepted: no ballots could approve it
        view["approval"] = f"impossible: {exc.message}"
        return view
    view["owners"] = [{"name": owner, "ballot": BALLOT_STATES.get(ballots.get(owner, ""), "pending")}
                      for owner in decision.owners]
    view["approval"] = decision.reason()
    view["ignoredVotes"] = list(decision.ignored)
    return view
