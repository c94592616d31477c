"""The CGS stand-in's governance rules, as CGS's constitution has them: every active member that is not an
operator must accept; one vote against vetoes a contract, policy, deployment, document or enabling an export;
disabling an export needs no vote; members join by proposal and become active by acknowledging a state digest;
a proposal carries what it proposes, applies all or nothing, and only its proposer withdraws it."""

from __future__ import annotations

import pytest

from sidecars.common.errors import BadRequest, CcrError, Conflict, Forbidden, NotFound
from sidecars.common.memberauth import MemberIdentity
from sidecars.emulators.cgs.store import Store

A, B = "a" * 64, "b" * 64


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "cgs.db")
    store.add_member(A, "alice", "cert-a")
    store.add_member(B, "bob", "cert-b")
    store.put_contract("c1", {"x": 1}, None)
    return store


def _propose(store: Store, name: str, proposer: str = A, **args) -> str:
    return store.create_proposal(proposer, [{"name": name, "args": {"contractId": "c1", **args}}])["proposalId"]


def _accept_contract(store: Store, contract_id: str = "c1") -> None:
    pid = store.create_proposal(A, [{"name": "set_contract", "args": {
        "contractId": contract_id, "contract": store.contract_view(contract_id)}}])["proposalId"]
    store.vote(pid, A, True)
    store.vote(pid, B, True)
    assert store.is_accepted(contract_id)


@pytest.fixture
def accepted(store) -> Store:
    _accept_contract(store)
    return store


def _state(store: Store, pid: str) -> str:
    return store.proposal_view(store.proposal(pid))["proposalState"]


def test_contract_accepted_only_when_every_member_accepts_and_it_is_what_was_proposed(store):
    pid = store.create_proposal(A, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])["proposalId"]
    assert store.contract_view("c1")["state"] == "Proposed"
    assert store.vote(pid, A, True)["state"] == "Open"
    # Changing the draft after the proposal does not change what the members vote on.
    store.put_contract("c1", {"x": "changed"}, store.contract("c1")["version"])
    assert store.contract_view("c1")["data"] == {"x": 1}
    assert store.vote(pid, B, True)["state"] == "Accepted"
    assert store.contract_view("c1")["data"] == {"x": 1}
    assert store.execution_status("c1") == {"status": "enabled"}
    view = store.proposal_view(store.proposal(pid))
    assert view == {"proposalId": pid, "proposerId": A, "proposalState": "Accepted", "ballotCount": 2,
                    "finalVotes": {A: True, B: True}}
    with pytest.raises(CcrError, match="accepted contract cannot be changed") as refused:
        store.put_contract("c1", {"x": 3}, store.contract("c1")["version"])
    assert refused.value.http_status == 405


def test_contract_drafts_change_only_at_their_version(store):
    with pytest.raises(Conflict, match="already exists"):
        store.put_contract("c1", {"x": 2}, None)
    with pytest.raises(CcrError) as stale:
        store.put_contract("c1", {"x": 2}, "999")
    assert stale.value.http_status == 412 and stale.value.code == "PreconditionFailed"


def test_one_vote_against_vetoes_and_the_contract_stays_a_draft(store):
    pid = store.create_proposal(A, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])["proposalId"]
    assert store.vote(pid, B, False)["state"] == "Rejected"
    assert store.contract_view("c1")["state"] == "Draft"
    with pytest.raises(BadRequest, match="not open"):
        store.vote(pid, A, True)


def test_a_member_votes_once_and_repeating_the_same_ballot_changes_nothing(store):
    pid = store.create_proposal(A, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])["proposalId"]
    store.vote(pid, A, True)
    assert store.vote(pid, A, True)["ballots"] == {A: True}
    with pytest.raises(BadRequest, match="different ballot"):
        store.vote(pid, A, False)
    assert store.proposal(pid)["ballots"] == {A: True}


def test_a_second_proposal_for_the_same_contract_is_rejected(store):
    proposed = {"contractId": "c1", "contract": store.contract_view("c1")}
    first = store.create_proposal(A, [{"name": "set_contract", "args": proposed}])
    second = store.create_proposal(B, [{"name": "set_contract", "args": proposed}])
    assert (first["state"], second["state"]) == ("Open", "Rejected")
    mixed = store.create_proposal(A, [{"name": "set_contract", "args": {"contractId": "c9", "contract": {}}},
                                      {"name": "set_member_document", "args": {"documentId": "d", "document": {
                                          "contractId": "c1", "data": {}}}}])
    assert mixed["state"] == "Rejected"


def test_disabling_an_export_needs_no_vote_enabling_one_needs_all(accepted):
    enable = _propose(accepted, "set_contract_runtime_options_enable_logging")
    assert accepted.option_status("c1", "logging") == {"status": "disabled", "proposalIds": [enable]}
    accepted.vote(enable, A, True)
    assert accepted.option_status("c1", "logging")["status"] == "disabled"
    accepted.vote(enable, B, True)
    assert accepted.option_status("c1", "logging")["status"] == "enabled"
    disable = accepted.create_proposal(B, [{"name": "set_contract_runtime_options_disable_logging",
                                            "args": {"contractId": "c1"}}])
    assert disable["state"] == "Accepted" and not disable["ballots"]
    assert accepted.option_status("c1", "logging")["status"] == "disabled"


def test_operators_votes_do_not_count(tmp_path):
    store = Store(tmp_path / "cgs.db")
    operator = MemberIdentity.create(tmp_path / "op", "operator")
    op_id = store.add_genesis_member(operator.cert_pem)
    store.add_member(A, "alice", "cert-a")
    store.put_contract("c1", {"x": 1}, None)
    pid = store.create_proposal(op_id, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])["proposalId"]
    assert store.vote(pid, op_id, True)["state"] == "Open"
    assert store.vote(pid, A, True)["state"] == "Accepted"


def test_a_member_joins_by_proposal_and_acknowledgement(tmp_path):
    store = Store(tmp_path / "cgs.db")
    op_id = store.add_genesis_member(MemberIdentity.create(tmp_path / "op", "operator").cert_pem)
    assert store.add_genesis_member(MemberIdentity.load(tmp_path / "op").cert_pem) == op_id  # once
    alice, bob = (MemberIdentity.create(tmp_path / n, n) for n in ("alice", "bob"))
    # No active member but the operator: nobody's vote is needed yet, as in CCF.
    joined = store.create_proposal(op_id, [{"name": "set_member", "args": {
        "cert": alice.cert_pem, "member_data": {"identifier": "alice"}}}])
    assert joined["state"] == "Accepted"
    assert store.state.members[alice.member_id]["status"] == "Accepted"
    with pytest.raises(BadRequest, match="update first"):
        store.ack(alice.member_id, {"stateDigest": "00" * 32})
    digest = store.state_digest(alice.member_id)
    with pytest.raises(BadRequest, match="not the one last issued"):
        store.ack(alice.member_id, {"stateDigest": "00" * 32})
    store.ack(alice.member_id, digest)
    assert store.state.members[alice.member_id]["status"] == "Active"
    # Now alice decides with the others: bob's membership waits for her.
    pid = store.create_proposal(op_id, [{"name": "set_member", "args": {
        "cert": bob.cert_pem, "member_data": {"identifier": "bob"}}}])["proposalId"]
    assert _state(store, pid) == "Open"
    store.vote(pid, alice.member_id, True)
    assert _state(store, pid) == "Accepted"
    # An accepted member that has not acknowledged holds a contract open until it does and votes.
    store.put_contract("c1", {"x": 1}, None)
    contract = store.create_proposal(alice.member_id, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])["proposalId"]
    assert store.vote(contract, alice.member_id, True)["state"] == "Open"
    store.ack(bob.member_id, store.state_digest(bob.member_id))
    assert store.vote(contract, bob.member_id, True)["state"] == "Accepted"
    view = {m["memberId"]: m for m in store.members_view()}
    assert view[op_id]["memberData"] == {"identifier": "operator", "isOperator": True}
    assert view[bob.member_id]["status"] == "Active" and view[bob.member_id]["certificate"] == bob.cert_pem


def test_an_operator_adds_operators_alone_but_not_members(tmp_path, store):
    op_id = store.add_genesis_member(MemberIdentity.create(tmp_path / "op", "operator").cert_pem)
    second = MemberIdentity.create(tmp_path / "op2", "op2")
    carol = MemberIdentity.create(tmp_path / "carol", "carol")
    assert store.create_proposal(op_id, [{"name": "set_member", "args": {
        "cert": second.cert_pem, "member_data": {"identifier": "op2", "isOperator": True}}}])["state"] == "Accepted"
    assert store.create_proposal(op_id, [{"name": "set_member", "args": {
        "cert": carol.cert_pem, "member_data": {"identifier": "carol"}}}])["state"] == "Open"


def test_only_the_proposer_withdraws_an_open_proposal(store):
    pid = store.create_proposal(A, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])["proposalId"]
    with pytest.raises(Forbidden):
        store.withdraw(pid, B)
    assert store.withdraw(pid, A)["state"] == "Withdrawn"
    assert store.contract_view("c1")["state"] == "Draft"
    with pytest.raises(BadRequest, match="not open"):
        store.withdraw(pid, A)
    with pytest.raises(BadRequest, match="not open"):
        store.vote(pid, B, True)


def test_policy_needs_an_accepted_contract_and_add_remove_fail_closed(store):
    with pytest.raises(BadRequest, match="once contract 'c1' has been accepted"):
        _propose(store, "set_clean_room_policy", type="add", claims={"x-ms-sevsnpvm-hostdata": ["aa"]})
    _accept_contract(store)
    assert "no clean room policy" in store.policy_violation("c1", {"x-ms-sevsnpvm-hostdata": "aa"})
    for kind, claims in (("add", {"x-ms-sevsnpvm-hostdata": ["aa", "bb"], "x-ms-sevsnpvm-is-debuggable": False}),
                         ("remove", {"x-ms-sevsnpvm-hostdata": ["aa"]})):
        pid = _propose(store, "set_clean_room_policy", type=kind, claims=claims)
        store.vote(pid, A, True)
        store.vote(pid, B, True)
    ok = {"x-ms-sevsnpvm-hostdata": "BB", "x-ms-sevsnpvm-is-debuggable": False}
    assert store.policy_violation("c1", ok) is None
    assert "hostdata" in store.policy_violation("c1", {**ok, "x-ms-sevsnpvm-hostdata": "aa"})
    assert "debuggable" in store.policy_violation("c1", {**ok, "x-ms-sevsnpvm-is-debuggable": True})
    assert "debuggable" in store.policy_violation("c1", {"x-ms-sevsnpvm-hostdata": "bb"})


def test_a_proposal_that_fails_to_apply_applies_nothing(accepted):
    removal = {"contractId": "c1", "type": "remove", "claims": {"x-ms-sevsnpvm-hostdata": ["never-added"]}}
    pid = accepted.create_proposal(A, [
        {"name": "set_contract_runtime_options_enable_logging", "args": {"contractId": "c1"}},
        {"name": "set_clean_room_policy", "args": removal}])["proposalId"]
    accepted.vote(pid, A, True)
    failed = accepted.vote(pid, B, True)
    assert failed["state"] == "Failed" and "does not exist" in failed["failure"]["reason"]
    assert accepted.option_status("c1", "logging")["status"] == "disabled"
    assert Store(accepted.path).state.proposals[pid]["state"] == "Failed"


def test_invalid_proposals_are_refused(accepted):
    with pytest.raises(BadRequest, match="not an allowed claim"):
        _propose(accepted, "set_clean_room_policy", type="add", claims={"x-ms-made-up": ["x"]})
    with pytest.raises(BadRequest, match="not a bool"):
        _propose(accepted, "set_clean_room_policy", type="add", claims={"x-ms-sevsnpvm-is-debuggable": "false"})
    with pytest.raises(BadRequest, match="not supported"):
        _propose(accepted, "set_clean_room_policy", type="replace", claims={"x-ms-sevsnpvm-hostdata": ["a"]})
    with pytest.raises(BadRequest, match="unknown action"):
        _propose(accepted, "drop_database")
    with pytest.raises(BadRequest, match="contract must be an object"):
        _propose(accepted, "set_contract", version="1")
    with pytest.raises(BadRequest, match="cert must be a PEM"):
        accepted.create_proposal(A, [{"name": "set_member", "args": {"cert": "not a cert"}}])
    with pytest.raises(NotFound):
        accepted.create_proposal(A, [{"name": "enable_ca", "args": {"contractId": "nope"}}])


def test_any_member_disabling_stops_execution(accepted):
    accepted.set_execution("c1", B, "disabled")
    accepted.set_execution("c1", A, "enabled")
    status = accepted.execution_status("c1")
    assert status["status"] == "disabled" and "bob" in status["reason"]["message"]


def test_documents_are_accepted_as_proposed(accepted):
    accepted.put_document("d1", "c1", {"v": 1}, None)
    pid = accepted.create_proposal(A, [{"name": "set_member_document", "args": {
        "documentId": "d1", "document": accepted.document_view("d1")}}])["proposalId"]
    accepted.put_document("d1", "c1", {"v": "changed"}, accepted.state.documents["d1"]["version"])
    assert accepted.document_view("d1")["state"] == "Proposed"
    accepted.vote(pid, A, True)
    accepted.vote(pid, B, True)
    document = accepted.document_view("d1")
    assert (document["state"], document["data"], document["proposalId"]) == ("Accepted", {"v": 1}, pid)
    with pytest.raises(CcrError, match="accepted document cannot be changed"):
        accepted.put_document("d1", "c1", {"v": 2}, document["version"])


def test_state_survives_a_restart(store, tmp_path):
    store.put_secret("c1", A, "db", "value")
    again = Store(tmp_path / "cgs.db")
    assert again.state.secrets["c1"] == {f"{A}_db": "value"}
    assert again.member_name(B) == "bob"


@pytest.mark.parametrize("data", [{"contract": "a string"}, {"contract": {"members": "alice"}}, ["list"], "text",
                                  {"contract": {"members": [1, 2]}}, {"contract": {"members": []}}])
def test_contract_data_that_names_no_members_leaves_the_deployment_to_every_member(tmp_path, data):
    store = Store(tmp_path / "cgs.db")
    store.add_member(A, "alice", "cert-a")
    store.add_member(B, "bob", "cert-b")
    store.put_contract("c2", data, None)
    _accept_contract(store, "c2")
    assert store.contract_members("c2") == {A, B}
    spec = {"data": {"resources": []}}
    pid = store.create_proposal(B, [{"name": "set_deployment_spec",
                                     "args": {"contractId": "c2", "spec": spec}}])["proposalId"]
    assert store.vote(pid, A, True)["state"] == "Open"
    assert store.vote(pid, B, True)["state"] == "Accepted"
    assert store.deployment_spec("c2") == {"proposalIds": [], "data": {"resources": []}, "proposalId": pid}


@pytest.mark.parametrize("spec", [None, "x", {}, {"data": {}}, {"data": []}, {"data": "t"}])
def test_a_deployment_spec_must_carry_a_template(accepted, spec):
    with pytest.raises(BadRequest, match="spec must be"):
        _propose(accepted, "set_deployment_spec", spec=spec)


def test_removing_a_member_needs_the_members_and_an_operator_retires_operators_alone(tmp_path):
    store = Store(tmp_path / "cgs.db")
    op_id = store.add_genesis_member(MemberIdentity.create(tmp_path / "op", "operator").cert_pem)
    alice, bob = (MemberIdentity.create(tmp_path / n, n) for n in ("alice", "bob"))
    for member in (alice, bob):
        store.add_member(member.member_id, member.name, member.cert_pem)
    removal = store.create_proposal(op_id, [{"name": "remove_member", "args": {"cert": bob.cert_pem}}])
    assert removal["state"] == "Open"  # the operator cannot drop a member on its own
    store.vote(removal["proposalId"], alice.member_id, True)
    assert store.vote(removal["proposalId"], bob.member_id, True)["state"] == "Accepted"
    assert bob.member_id not in store.state.members and bob.member_id not in Store(store.path).state.members
    second = MemberIdentity.create(tmp_path / "op2", "op2")
    store.create_proposal(op_id, [{"name": "set_member", "args": {
        "cert": second.cert_pem, "member_data": {"identifier": "op2", "isOperator": True}}}])
    retired = store.create_proposal(op_id, [{"name": "remove_member", "args": {"cert": second.cert_pem}}])
    assert retired["state"] == "Accepted" and second.member_id not in store.state.members
    with pytest.raises(BadRequest, match="not a member's"):
        store.create_proposal(op_id, [{"name": "remove_member", "args": {"cert": bob.cert_pem}}])
