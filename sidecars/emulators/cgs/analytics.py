"""Analytics documents in the CGS stand-in: who decides them and who may revoke them (issue 17).

An analytics document is a member document labelled `kind: dataset` or `kind: query` whose `data` is the
dataset or query document as JSON text (`sidecars.analytics.documents` parses it). Its deciders, the only
members whose ballots count (for and against), are:
- a dataset: its owner alone, who alone may propose it; the document id is the dataset's name;
- a query: the owners of the datasets it reads, each of which must already be an accepted dataset document
  of the same contract; any member of the contract may propose it.
The same deciders hold per-document execution consent afterwards: one of them disabling it revokes the
document (and every query reading a revoked dataset); enabling clears only that member's own disable.

Owners are named by member name (`member_data.identifier`), which the store keeps unique, so a name always
stands for one certificate.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ...analytics.documents import (
    AnalyticsDocumentError,
    BudgetGrant,
    Dataset,
    PrivacyRefused,
    Query,
    parse_budget_grant,
    parse_dataset,
    parse_query,
    privacy_spend,
)
from ...common.errors import BadRequest, Forbidden

if TYPE_CHECKING:
    from .store import Store

KINDS = ("dataset", "query", "budget")
#: an analytics document's id, as a dataset's name (the dataset and query documents' own name pattern)
DOCUMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_LABELS = 16
MAX_LABEL_CHARS = 64


def check_labels(labels: Any) -> None:
    """A document's `labels`: absent, or a small object of short strings whose `kind`, if any, is known."""
    if labels is None:
        return
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= MAX_LABEL_CHARS
            and len(v) <= MAX_LABEL_CHARS for k, v in labels.items()):
        raise BadRequest(f"labels: must be an object of at most {MAX_LABELS} strings of at most "
                         f"{MAX_LABEL_CHARS} characters", code="InvalidLabels")
    if "kind" in labels and labels["kind"] not in KINDS:
        raise BadRequest(f"labels.kind: {labels['kind'][:MAX_LABEL_CHARS]!r} is not one of {', '.join(KINDS)}",
                         code="InvalidLabels")


def kind_of(document: dict[str, Any]) -> str | None:
    labels = document.get("labels")
    kind = labels.get("kind") if isinstance(labels, dict) else None
    return kind if kind in KINDS else None


def parsed(document: dict[str, Any], kind: str) -> Dataset | Query | BudgetGrant:
    """The document's `data` as a dataset, query or budget grant; a one-line 400 naming every problem otherwise."""
    text = document.get("data")
    if not isinstance(text, str):
        raise BadRequest(f"an analytics {kind} document's data must be the {kind} document as JSON text",
                         code="InvalidAnalyticsDocument")
    try:
        if kind == "budget":
            return parse_budget_grant(text)
        return parse_dataset(text) if kind == "dataset" else parse_query(text)
    except AnalyticsDocumentError as exc:
        raise BadRequest(exc.message, code="InvalidAnalyticsDocument") from None


def accepted_dataset(store: Store, contract_id: str, name: str) -> Dataset:
    document = store.state.documents.get(name)
    if (document is None or document.get("state") != "Accepted" or document.get("contractId") != contract_id
            or kind_of(document) != "dataset"):
        raise BadRequest(f"the query reads dataset {name!r}, which is not an accepted dataset document of contract "
                         f"{contract_id!r}", code="UnknownDataset")
    dataset = parsed(document, "dataset")
    assert isinstance(dataset, Dataset)
    return dataset


def check_proposal(store: Store, proposer: str, actions: list[dict[str, Any]]) -> None:
    """At proposal time: labels well formed; an analytics document parses, is proposed alone, by its owner (a
    dataset) or a member of the contract (a query) over accepted datasets only."""
    for action in actions:
        if action["name"] != "set_member_document":
            continue
        document = action["args"]["document"]
        check_labels(document.get("labels"))
        kind = kind_of(document)
        if kind is None:
            continue
        if len(actions) != 1:
            raise BadRequest("an analytics document is proposed alone (the owners of its data decide it)",
                             code="ProposalFailedToValidate")
        contract_id, document_id = document["contractId"], action["args"]["documentId"]
        if not DOCUMENT_ID.fullmatch(document_id):
            raise BadRequest(f"an analytics document's id is a plain name ({DOCUMENT_ID.pattern}), not "
                             f"{document_id[:64]!r}", code="InvalidAnalyticsDocument")
        members = store.contract_members(contract_id)
        content = parsed(document, kind)
        if isinstance(content, Dataset):
            if content.name != document_id:
                raise BadRequest(f"a dataset document's id is its name: {content.name!r}, not {document_id[:64]!r}",
                                 code="InvalidAnalyticsDocument")
            owner = store.member_named(content.owner)
            if owner not in members:
                raise BadRequest(f"dataset {content.name!r}: its owner {content.owner!r} is not a member of contract "
                                 f"{contract_id!r}", code="NotContractMember")
            if proposer != owner:
                raise Forbidden(f"{store.member_name(proposer)} is not the owner of dataset {content.name!r} "
                                f"({content.owner}): only its owner proposes it", code="NotDatasetOwner")
            continue
        if isinstance(content, BudgetGrant):
            owner_name = accepted_dataset(store, contract_id, content.dataset).owner
            if proposer != store.member_named(owner_name):
                raise Forbidden(f"{store.member_name(proposer)} is not the owner of dataset {content.dataset!r} "
                                f"({owner_name}): only its owner raises its privacy budget", code="NotDatasetOwner")
            continue
        if proposer not in members:
            raise Forbidden(f"{store.member_name(proposer)} is not a member of contract {contract_id!r}: only its "
                            "members propose its queries", code="NotContractMember")
        datasets = {source.dataset_name: accepted_dataset(store, contract_id, source.dataset_name)
                    for source in content.input_datasets}
        try:
            # a query over a dataset with a privacy policy: private segments only, within each owner's ε per run
            privacy_spend(content, datasets)
        except PrivacyRefused as exc:
            raise BadRequest(exc.message, code=exc.code) from None


def deciders(store: Store, document: dict[str, Any]) -> set[str] | None:
    """The member ids deciding an analytics document (None for any other document)."""
    kind = kind_of(document)
    if kind is None:
        return None
    content = parsed(document, kind)
    if isinstance(content, Dataset):
        return {store.member_named(content.owner)}
    if isinstance(content, BudgetGrant):
        return {store.member_named(accepted_dataset(store, document["contractId"], content.dataset).owner)}
    return {store.member_named(accepted_dataset(store, document["contractId"], source.dataset_name).owner)
            for source in content.input_datasets}


def _revoked_by(store: Store, document_id: str) -> list[str]:
    return sorted(store.member_name(member) for member, status in store.state.document_execution.get(
        document_id, {}).items() if status == "disabled")


def execution_status(store: Store, contract_id: str, document_id: str) -> dict[str, Any]:
    """`{status, reason}` of a document's execution consent: disabled unless accepted and revoked by nobody; a
    query is also disabled while any dataset it reads is. A revoked one also lists `revokedBy` (member names,
    the stand-in's addition: `ccr analytics query show` says which owner revoked)."""
    if not store.is_accepted(contract_id):
        # as the contract's own status: before acceptance a room's attestation is not checked against a policy,
        # so whoever asks learns nothing but "disabled"
        return {"status": "disabled", "reason": {"code": "ContractNotAccepted",
                                                 "message": "Contract does not exist or has not been accepted."}}
    document = store.state.documents.get(document_id)
    if document is None or document.get("contractId") != contract_id or document.get("state") != "Accepted":
        return {"status": "disabled", "reason": {
            "code": "DocumentNotAccepted",
            "message": f"Document {document_id[:64]!r} does not exist in contract {contract_id[:64]!r} or has "
                       "not been accepted."}}
    reasons: list[str] = []
    revoked_by: set[str] = set()
    revoked = _revoked_by(store, document_id)
    if revoked:
        reasons.append(f"Consent for document {document_id!r} has been revoked by: {', '.join(revoked)}.")
        revoked_by.update(revoked)
    if kind_of(document) == "query":
        query = parsed(document, "query")
        assert isinstance(query, Query)
        for source in query.input_datasets:
            revoked = _revoked_by(store, source.dataset_name)
            if revoked:
                reasons.append(f"Consent for dataset {source.dataset_name!r}, which query {document_id!r} reads, "
                               f"has been revoked by: {', '.join(revoked)}.")
                revoked_by.update(revoked)
    if reasons:
        return {"status": "disabled", "reason": {"code": "ConsentRevoked", "message": " ".join(reasons)},
                "revokedBy": sorted(revoked_by)}
    return {"status": "enabled"}
