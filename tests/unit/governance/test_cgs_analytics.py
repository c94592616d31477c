"""The CGS stand-in's rules for analytics documents, on the store itself (the integration tests drive the same
through the member client): only the owners of the data decide, their revocations persist, and the rules
cannot be sidestepped by bundling actions, odd labels, or a contract that is not accepted yet."""

from __future__ import annotations

import json

import pytest

from sidecars.common.errors import BadRequest, Forbidden
from sidecars.emulators.cgs.store import Store

NORTHWIND, WOODGROVE, CONTOSO = "n" * 64, "w" * 64, "c" * 64


def dataset(name: str, owner: str) -> str:
    return json.dumps({"name": name, "owner": owner, "store": "s", "container": "c", "format": "csv",
                       "schema": [{"name": "id", "type": "int"}], "allowedFields": ["id"], "accessMode": "row",
                       "encryption": {"mode": "SSE"}})


def query(*names: str) -> str:
    return json.dumps({"inputDatasets": [{"datasetName": n, "viewName": f"v{i}"} for i, n in enumerate(names)],
                       "segments": [{"executionSequence": 1, "sql": "SELECT COUNT(*) FROM v0"}],
                       "outputDataset": {"datasinkName": "sink"}})


def action(document_id: str, kind: str | None, data: str, contract_id: str = "c1") -> dict:
    document = {"contractId": contract_id, "data": data, **({"labels": {"kind": kind}} if kind else {})}
    return {"name": "set_member_document", "args": {"documentId": document_id, "document": document}}


def propose(store: Store, proposer: str, *actions: dict) -> str:
    return store.create_proposal(proposer, list(actions))["proposalId"]


def state(store: Store, pid: str) -> str:
    return store.proposal(pid)["state"]


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "cgs.db")
    for member_id, name in ((NORTHWIND, "northwind"), (WOODGROVE, "woodgrove"), (CONTOSO, "contoso")):
        store.add_member(member_id, name, f"cert-{name}")
    store.put_contract("c1", {}, None)
    pid = store.create_proposal(NORTHWIND, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])["proposalId"]
    for member in (NORTHWIND, WOODGROVE, CONTOSO):
        store.vote(pid, member, True)
    return store


@pytest.fixture
def published(store) -> Store:
    for name, owner in (("sales", NORTHWIND), ("ads", WOODGROVE)):
        pid = propose(store, owner, action(name, "dataset", dataset(name, store.member_name(owner))))
        store.vote(pid, owner, True)
        assert state(store, pid) == "Accepted"
    return store


def test_an_analytics_document_is_proposed_alone(published):
    # Riding along, a generic document would be decided by the narrower vote of the query's owners.
    with pytest.raises(BadRequest, match="proposed alone"):
        propose(published, WOODGROVE, action("q", "query", query("sales")), action("other", None, "{}"))


def test_a_non_owners_reject_does_not_veto_and_its_accept_does_not_accept(published):
    pid = propose(published, CONTOSO, action("q", "query", query("sales", "ads")))
    published.vote(pid, CONTOSO, False)
    published.vote(pid, WOODGROVE, True)
    assert state(published, pid) == "Open"
    published.vote(pid, NORTHWIND, True)
    assert state(published, pid) == "Accepted"
    votes = {v["memberId"]: v["vote"] for v in published.state.documents["q"]["finalVotes"]}
    assert votes == {CONTOSO: False, WOODGROVE: True, NORTHWIND: True}


def test_generic_documents_keep_the_every_member_rule(published):
    pid = propose(published, CONTOSO, action("plain", None, "{}"))
    published.vote(pid, CONTOSO, True)
    published.vote(pid, NORTHWIND, True)
    assert state(published, pid) == "Open"
    published.vote(pid, WOODGROVE, False)
    assert state(published, pid) == "Rejected"


@pytest.mark.parametrize("labels, problem", [
    ({"kind": "script"}, "labels.kind"), ([], "labels: must be an object"), ({"kind": 1}, "labels: must be"),
    ({f"k{i}": "v" for i in range(17)}, "at most 16"), ({"k": "v" * 65}, "at most 64"),
])
def test_odd_labels_are_refused_on_drafts_and_proposals(published, labels, problem):
    with pytest.raises(BadRequest, match=problem):
        published.put_document("d", "c1", "{}", None, labels)  # type: ignore[arg-type]
    proposed = action("d", None, "{}")
    proposed["args"]["document"]["labels"] = labels
    with pytest.raises(BadRequest, match=problem):
        propose(published, NORTHWIND, proposed)


def test_a_dataset_document_must_be_json_text_owned_by_its_proposer(published):
    with pytest.raises(BadRequest, match="JSON text"):
        propose(published, NORTHWIND, action("t", "dataset", {"name": "t"}))  # type: ignore[arg-type]
    with pytest.raises(Forbidden, match="only its owner proposes it"):
        propose(published, CONTOSO, action("t", "dataset", dataset("t", "northwind")))


def test_revocations_persist_and_are_the_deciders_alone(published, tmp_path):
    pid = propose(published, WOODGROVE, action("q", "query", query("sales", "ads")))
    published.vote(pid, WOODGROVE, True)
    published.vote(pid, NORTHWIND, True)
    with pytest.raises(Forbidden, match="contoso does not decide document 'q'"):
        published.set_document_execution("c1", "q", CONTOSO, "disabled")
    published.set_document_execution("c1", "sales", NORTHWIND, "disabled")
    published.close()
    reopened = Store(tmp_path / "cgs.db")
    status = reopened.document_execution_status("c1", "q")
    assert status["status"] == "disabled" and status["revokedBy"] == ["northwind"]
    assert reopened.document_execution_status("c1", "ads") == {"status": "enabled"}


def test_before_the_contract_is_accepted_every_document_status_is_disabled(tmp_path):
    store = Store(tmp_path / "cgs.db")
    store.add_member(NORTHWIND, "northwind", "cert-n")
    store.put_contract("draft", {}, None)
    pid = propose(store, NORTHWIND, action("sales", "dataset", dataset("sales", "northwind"), "draft"))
    store.vote(pid, NORTHWIND, True)
    assert store.state.documents["sales"]["state"] == "Accepted"
    # a room's attestation is checked against the policy only once the contract is accepted: until then the
    # answer must be the same for anyone who asks
    assert store.document_execution_status("draft", "sales")["reason"]["code"] == "ContractNotAccepted"
