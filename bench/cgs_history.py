"""The CGS stand-in with a long history: what a room's audit write and a members' proposal + vote round cost
beside an empty contract and beside one with 100 000 prior events and 10 000 accepted documents.

The history is written straight into the database through the stand-in's own row functions (`db`), one
transaction, as a long-lived contract would have left it: a chain of 100 000 audit events, and 10 000
member documents each with the accepted proposal that carried it. Then, on the stand-in's `Store` and
`AuditLog` sharing one database (as the HTTP app holds them), each write as its route makes it:

- an audit event: one hash-chained append, committed (fsync'd) before it returns;
- a round: a member puts a draft document, proposes it (`set_member_document`), and both members vote for
  it, each step with its audit record in the same transaction; the last ballot accepts it.

Figures (medians): `cgs_audit_event_ms_at_0`, `cgs_audit_event_ms_at_100000`, `cgs_round_ms_at_0`,
`cgs_round_ms_at_100000`, and `cgs_history_cost_ratio` (the larger of the two large ÷ empty ratios; goal
≤ 1.5). `cgs_history_rss_mib` is the memory the stand-in's state takes once the long history is loaded
(resident set before ÷ after opening it): events stay on disk, what is held is the governance records.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sidecars.common.auditchain import GENESIS, event_hash
from sidecars.emulators.cgs import db
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.store import Store

EVENTS = 100_000
DOCUMENTS = 10_000
AUDIT_ROUNDS = 200
VOTE_ROUNDS = 100
CONTRACT = "bench-contract"
ALICE, BOB = "a" * 64, "b" * 64


def _paired_medians_ms(empty: Callable[[int], object], long: Callable[[int], object], rounds: int
                       ) -> tuple[float, float]:
    """Median milliseconds of each action, run alternately: the machine is shared and an fsync's latency
    swings with the neighbours' writes, so both cases sample the same moments."""
    for n in range(5):  # warm the page cache and the interpreter's caches alike for both cases
        empty(-1 - n)
        long(-1 - n)
    samples: tuple[list[float], list[float]] = ([], [])
    for n in range(rounds):
        for action, times in ((empty, samples[0]), (long, samples[1])):
            started = time.perf_counter()
            action(n)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[0]), statistics.median(samples[1])


def _history_rows(events: int, documents: int) -> tuple[list[dict], list[tuple[str, str, str]]]:
    chain, prev = [], GENESIS
    for seqno in range(1, events + 1):
        data = {"action": "governance", "member": "alice", "n": seqno, "padding": "x" * 120}
        digest = event_hash(prev, seqno, "0" * 13, "cgs", "governance", data)
        chain.append({"seqno": seqno, "timestamp": "0" * 13, "scope": "cgs", "id": "governance", "data": data,
                      "prev_hash": prev, "hash": digest})
        prev = digest
    rows = []
    for n in range(documents):
        document = {"id": f"old-{n}", "contractId": CONTRACT, "data": {"n": n, "padding": "y" * 300}, "labels": {},
                    "version": str(n + 10), "state": "Accepted", "proposalId": f"{n:064x}",
                    "finalVotes": [{"memberId": ALICE, "vote": True}, {"memberId": BOB, "vote": True}]}
        proposal = {"proposalId": f"{n:064x}", "proposerId": ALICE, "state": "Accepted",
                    "ballots": {ALICE: True, BOB: True},
                    "actions": [{"name": "set_member_document", "args": {"documentId": f"old-{n}",
                                                                         "document": document}}]}
        rows.append(("documents", json.dumps([f"old-{n}"]), json.dumps(document)))
        rows.append(("proposals", json.dumps([f"{n:064x}"]), json.dumps(proposal)))
    return chain, rows


def _contract(path: Path, events: int, documents: int) -> None:
    """A database with two active members, an accepted contract and the history asked for."""
    store = Store(path)
    store.add_member(ALICE, "alice", "cert-a")
    store.add_member(BOB, "bob", "cert-b")
    store.put_contract(CONTRACT, {"bench": True}, None)
    with store._change() as touched:
        touched.append(("contracts", CONTRACT))
        store.state.contracts[CONTRACT]["state"] = "Accepted"
    store.close()
    chain, rows = _history_rows(events, documents)
    conn = db.connect(path)
    with db.transaction(conn):
        db.insert_events(conn, CONTRACT, chain)
        db.upsert_records(conn, rows)
    conn.close()


class Cgs:
    """The stand-in's store and log on one database, and each write as its route makes it."""

    def __init__(self, path: Path):
        self.database = db.Database(path)
        self.store, self.audit = Store(self.database), AuditLog(self.database)

    def audit_event(self, n: int) -> None:
        self.audit.append(CONTRACT, "", f"job-{n}", {"status": "running", "step": n})

    def _recorded(self, who: str, action: str, change: Callable[[], object], **details: object) -> object:
        with self.database.transaction():
            result = change()
            self.audit.append(CONTRACT, "cgs", "governance", {"action": action, "member": who, **details})
        return result

    def round(self, n: int) -> None:
        document_id = f"new-{n}"
        document = self._recorded("alice", "put_document", lambda: self.store.put_document(
            document_id, CONTRACT, {"query": f"SELECT {n}"}, None), documentId=document_id)
        action = {"name": "set_member_document", "args": {"documentId": document_id, "document": document}}
        proposal = self._recorded("alice", "propose", lambda: self.store.create_proposal(ALICE, [action]))
        pid = proposal["proposalId"]
        self._recorded("alice", "vote", lambda: self.store.vote(pid, ALICE, True), proposalId=pid)
        final = self._recorded("bob", "vote", lambda: self.store.vote(pid, BOB, True), proposalId=pid)
        if final["state"] != "Accepted":
            raise RuntimeError(f"round {n}: proposal {pid} is {final['state']}, not Accepted")

    def close(self) -> None:
        self.database.close()


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ccr-bench-cgs-history-") as tmp:
        base = Path(tmp)
        _contract(base / "empty.db", 0, 0)
        _contract(base / "long.db", EVENTS, DOCUMENTS)
        empty = Cgs(base / "empty.db")
        before = _rss_mib()
        long = Cgs(base / "long.db")
        rss = _rss_mib() - before
        assert long.audit.head(CONTRACT)["seqno"] == EVENTS
        audit_0, audit_long = _paired_medians_ms(empty.audit_event, long.audit_event, AUDIT_ROUNDS)
        round_0, round_long = _paired_medians_ms(empty.round, long.round, VOTE_ROUNDS)
        empty.close()
        long.close()
    return {"cgs_audit_event_ms_at_0": audit_0, f"cgs_audit_event_ms_at_{EVENTS}": audit_long,
            "cgs_round_ms_at_0": round_0, f"cgs_round_ms_at_{EVENTS}": round_long,
            "cgs_history_cost_ratio": max(audit_long / audit_0, round_long / round_0),
            "cgs_history_rss_mib": rss}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key} = {value:.4g}")
