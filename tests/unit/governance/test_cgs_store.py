"""The CGS stand-in's governance rules: unanimity, rejection, policy edits, consent and runtime options."""

from __future__ import annotations

import pytest

from sidecars.common.errors import BadRequest, Conflict, NotFound
from sidecars.emulators.cgs.store import Store


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "cgs.db")
    store.add_member("a" * 64, "alice", "cert-a")
    store.add_member("b" * 64, "bob", "cert-b")
    store.put_contract("c1", {"x": 1}, None)
    return store


def _propose(store: Store, name: str, **args) -> str:
    return store.create_proposal("a" * 64, [{"name": name, "args": {"contractId": "c1", **args}}])["proposalId"]


def test_contract_accepted_only_when_every_member_accepts(store):
    pid = _propose(store, "set_contract", version=store.contract("c1")["version"])
    assert store.vote(pid, "a" * 64, True)["state"] == "Open"
    assert not store.is_accepted("c1")
    with pytest.raises(Conflict):
        store.put_contract("c1", {"x": 2}, store.contract("c1")["version"])
    assert store.vote(pid, "b" * 64, True)["state"] == "Accepted"
    assert store.is_accepted("c1") and store.execution_status("c1") == {"status": "enabled"}


def test_one_rejection_closes_the_proposal_and_the_contract_returns_to_draft(store):
    pid = _propose(store, "set_contract", version=store.contract("c1")["version"])
    assert store.vote(pid, "b" * 64, False)["state"] == "Rejected"
    assert store.contract("c1")["state"] == "Draft"
    with pytest.raises(Conflict):
        store.vote(pid, "a" * 64, True)


def test_policy_add_remove_and_fail_closed_without_policy(store):
    assert "no clean room policy" in store.policy_violation("c1", {"x-ms-sevsnpvm-hostdata": "aa"})
    for kind, claims in (("add", {"x-ms-sevsnpvm-hostdata": ["aa", "bb"], "x-ms-sevsnpvm-is-debuggable": False}),
                         ("remove", {"x-ms-sevsnpvm-hostdata": ["aa"]})):
        pid = _propose(store, "set_clean_room_policy", type=kind, claims=claims)
        store.vote(pid, "a" * 64, True)
        store.vote(pid, "b" * 64, True)
    ok = {"x-ms-sevsnpvm-hostdata": "BB", "x-ms-sevsnpvm-is-debuggable": False}
    assert store.policy_violation("c1", ok) is None
    assert "hostdata" in store.policy_violation("c1", {**ok, "x-ms-sevsnpvm-hostdata": "aa"})
    assert "debuggable" in store.policy_violation("c1", {**ok, "x-ms-sevsnpvm-is-debuggable": True})
    assert "debuggable" in store.policy_violation("c1", {"x-ms-sevsnpvm-hostdata": "bb"})


def test_invalid_proposals_are_refused(store):
    with pytest.raises(BadRequest, match="not an allowed claim"):
        _propose(store, "set_clean_room_policy", claims={"x-ms-made-up": ["x"]})
    with pytest.raises(BadRequest, match="not a bool"):
        _propose(store, "set_clean_room_policy", claims={"x-ms-sevsnpvm-is-debuggable": "false"})
    with pytest.raises(BadRequest, match="unknown action"):
        _propose(store, "drop_database")
    with pytest.raises(NotFound):
        store.create_proposal("a" * 64, [{"name": "enable_ca", "args": {"contractId": "nope"}}])


def test_any_member_disabling_stops_execution_and_options_need_votes(store):
    pid = _propose(store, "set_contract", version=store.contract("c1")["version"])
    store.vote(pid, "a" * 64, True)
    store.vote(pid, "b" * 64, True)
    store.set_execution("c1", "b" * 64, "disabled")
    store.set_execution("c1", "a" * 64, "enabled")
    status = store.execution_status("c1")
    assert status["status"] == "disabled" and "bob" in status["reason"]["message"]
    pid = _propose(store, "set_contract_runtime_options_enable_logging")
    assert store.option_status("c1", "logging") == {"status": "disabled", "proposalIds": [pid]}
    store.vote(pid, "a" * 64, True)
    store.vote(pid, "b" * 64, True)
    assert store.option_status("c1", "logging")["status"] == "enabled"
    assert store.option_status("c1", "telemetry")["status"] == "disabled"


def test_state_survives_a_restart(store, tmp_path):
    store.put_secret("c1", "a" * 64, "db", "value")
    again = Store(tmp_path / "cgs.db")
    assert again.state.secrets["c1"] == {f"{'a' * 64}_db": "value"}
    assert again.member_name("b" * 64) == "bob"


@pytest.mark.parametrize("data", [{"contract": "a string"}, {"contract": {"members": "alice"}}, ["list"], "text",
                                  {"contract": {"members": [1, 2]}}, {"contract": {"members": []}}])
def test_contract_data_that_names_no_members_leaves_the_deployment_to_every_member(tmp_path, data):
    store = Store(tmp_path / "cgs.db")
    store.add_member("a" * 64, "alice", "cert-a")
    store.add_member("b" * 64, "bob", "cert-b")
    store.put_contract("c2", data, None)
    pid = store.create_proposal("a" * 64, [{"name": "set_contract", "args": {"contractId": "c2"}}])["proposalId"]
    store.vote(pid, "a" * 64, True)
    store.vote(pid, "b" * 64, True)
    assert store.contract_members("c2") == {"a" * 64, "b" * 64}
    spec = {"data": {"resources": []}}
    pid = store.create_proposal("b" * 64, [{"name": "set_deployment_spec",
                                            "args": {"contractId": "c2", "spec": spec}}])["proposalId"]
    assert store.vote(pid, "a" * 64, True)["state"] == "Open"
    assert store.vote(pid, "b" * 64, True)["state"] == "Accepted"
    assert store.deployment_spec("c2") == {"proposalIds": [], "data": {"resources": []}, "proposalId": pid}


@pytest.mark.parametrize("spec", [None, "x", {}, {"data": {}}, {"data": []}, {"data": "t"}])
def test_a_deployment_spec_must_carry_a_template(store, spec):
    pid = _propose(store, "set_contract", version=store.contract("c1")["version"])
    store.vote(pid, "a" * 64, True)
    store.vote(pid, "b" * 64, True)
    with pytest.raises(BadRequest, match="spec must be"):
        _propose(store, "set_deployment_spec", spec=spec)
