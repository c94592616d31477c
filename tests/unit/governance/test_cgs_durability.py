"""The CGS stand-in's database: everything a method acknowledged is read back by a fresh process, a change
that could not be committed is not served from memory either, old state directories are imported once, and
two stand-ins cannot share one state directory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from sidecars.common.auditchain import verify_chain
from sidecars.common.errors import CcrError
from sidecars.emulators.cgs import db
from sidecars.emulators.cgs.__main__ import _lock_state_dir, _open_database
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.store import NESTING, Store

A, B = "a" * 64, "b" * 64


def _accepted_store(path) -> Store:
    store = Store(path)
    store.add_member(A, "alice", "cert-a")
    store.add_member(B, "bob", "cert-b")
    store.put_contract("c1", {"x": 1}, None)
    _pass(store, "set_contract", contract=store.contract_view("c1"))
    return store


def _pass(store: Store, name: str, **args) -> str:
    pid = store.create_proposal(A, [{"name": name, "args": {"contractId": "c1", **args}}])["proposalId"]
    store.vote(pid, A, True)
    store.vote(pid, B, True)
    return pid


def test_every_kind_of_change_is_read_back_by_another_process(tmp_path):
    path = tmp_path / "cgs.db"
    store = _accepted_store(path)
    _pass(store, "set_clean_room_policy", type="add", claims={"x-ms-sevsnpvm-hostdata": ["aa"]})
    _pass(store, "set_contract_runtime_options_enable_logging")
    _pass(store, "enable_ca")
    store.set_ca_key("c1", "key-pem", "cert-pem", "public-pem")
    store.set_execution("c1", B, "disabled")
    store.put_secret("c1", A, "one", "1")
    store.put_secret("c1", B, "two", "2")
    store.put_document("d1", "c1", {"doc": True}, None)
    open_pid = store.create_proposal(A, [{"name": "set_member_document", "args": {
        "documentId": "d1", "document": store.document_view("d1")}}])["proposalId"]
    expected = json.dumps(store.state.__dict__, sort_keys=True)
    # A separate interpreter, as a restarted stand-in would be: nothing is shared but the file.
    again = subprocess.run([sys.executable, "-c", "import json, sys; from sidecars.emulators.cgs.store import Store;"
                            "print(json.dumps(Store(sys.argv[1]).state.__dict__, sort_keys=True))", str(path)],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert again == expected
    reopened = Store(path)
    assert reopened.execution_status("c1")["status"] == "disabled"
    assert reopened.option_status("c1", "logging")["status"] == "enabled"
    assert reopened.document_view("d1")["state"] == "Proposed"
    assert reopened.state.proposals[open_pid]["state"] == "Open"
    assert reopened.put_contract("c2", {}, None)["version"] == str(store.state.version_counter + 1)


def test_a_change_that_cannot_be_committed_is_not_served_from_memory(tmp_path, monkeypatch):
    store = _accepted_store(tmp_path / "cgs.db")

    def disk_full(*_):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(db, "upsert_records", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        store.put_secret("c1", A, "lost", "value")
    with pytest.raises(sqlite3.OperationalError):
        store.set_execution("c1", A, "disabled")
    # Without the reload the secret would be released and consent withdrawn until the next restart.
    assert "c1" not in store.state.secrets
    assert store.execution_status("c1") == {"status": "enabled"}
    monkeypatch.undo()
    assert store.put_secret("c1", A, "kept", "value") == f"{A}_kept"
    assert Store(tmp_path / "cgs.db").state.secrets == {"c1": {f"{A}_kept": "value"}}


def test_audit_chain_and_head_survive_reopening_and_continue(tmp_path):
    path = tmp_path / "cgs.db"
    audit = AuditLog(path)
    for n in range(5):
        audit.append("c1", "app", f"e{n}", {"n": n, "text": "ünïcode"})
    audit.append("c2", "app", "other", {"n": 0})
    audit.close()
    again = AuditLog(path)
    assert again.head("c1")["seqno"] == 5
    again.append("c1", "app", "after", {"n": 5})
    events = again.events("c1")
    assert [e["seqno"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert verify_chain(events, again.head("c1")) == []
    assert again.page("c1", 2, 3) == events[1:3]
    assert again.head("nobody") == {"seqno": 0, "hash": "0" * 64}


def test_an_old_state_directory_is_imported_once(tmp_path):
    old = Store(tmp_path / "scratch.db")
    old.add_member(A, "alice", "cert-a")
    old.put_contract("c1", {"x": 1}, None)
    old.put_secret("c1", A, "s", "v")
    old_state = dict(old.state.__dict__)
    (tmp_path / "state.json").write_text(json.dumps(old_state))
    scratch = AuditLog(tmp_path / "scratch.db")
    events = [scratch.append("c1", "app", f"e{n}", {"n": n}) for n in range(3)]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps({"contract": "c1", **e}) + "\n" for e in events))

    database = _open_database(tmp_path)
    assert not (tmp_path / "state.json").exists() and (tmp_path / "state.json.imported").exists()
    assert Store(database).state.__dict__ == old_state
    audit = AuditLog(database)
    assert audit.events("c1") == events and verify_chain(audit.events("c1"), audit.head("c1")) == []
    audit.append("c1", "app", "new", {})
    audit.close()
    _open_database(tmp_path)  # the renamed files are not imported a second time
    assert [e["id"] for e in AuditLog(database).events("c1")] == ["e0", "e1", "e2", "new"]
    assert set(NESTING) <= set(old_state)


def test_a_second_stand_in_cannot_use_the_same_state_directory(tmp_path):
    _lock_state_dir(tmp_path)
    holder = subprocess.run([sys.executable, "-c", "import sys, pathlib; from sidecars.emulators.cgs.__main__ import "
                             "_lock_state_dir as lock; lock(pathlib.Path(sys.argv[1]))", str(tmp_path)],
                            capture_output=True, text=True)
    assert holder.returncode != 0 and "another CGS stand-in is using the state directory" in holder.stderr
    with pytest.raises(CcrError):
        # flock is per open file: a second open in this process is refused as well.
        _lock_state_dir(tmp_path)


def test_pages_and_latest_are_read_by_range_and_filter(tmp_path):
    audit = AuditLog(tmp_path / "cgs.db")
    for n in range(1, 9):
        audit.append("c1", "even" if n % 2 == 0 else "odd", f"e{n % 3}", {"n": n})
    assert [e["seqno"] for e in audit.page("c1", 2, 7, scope="even")] == [2, 4, 6]
    assert [e["seqno"] for e in audit.page("c1", 1, 8, event_id="e1", scope="odd")] == [1, 7]
    assert audit.latest("c1")["seqno"] == 8 and audit.latest("c1", event_id="e0")["seqno"] == 6
    assert audit.latest("c1", scope="none") is None and audit.latest("nobody") is None
    # Hostile bounds from the query string: no overflow, just the events that exist.
    assert [e["seqno"] for e in audit.page("c1", -2**70, 2**70)] == list(range(1, 9))
    assert audit.page("c1", 2**64, 2**64 + 5) == [] and audit.page("c1", -2**70, -2**65) == []
