"""The CGS stand-in's database: an acknowledged write costs the same with a long history as with none.

Figures (medians, each write one fsync'd transaction): `cgs_audit_append_ms_at_0` and
`cgs_audit_append_ms_at_10000` (one audit event appended to an empty chain and to one of 10 000 events),
`cgs_secret_put_ms_at_0` and `cgs_secret_put_ms_at_10000` (a contract secret stored beside none and beside
10 000), their ratios `cgs_audit_append_growth` and `cgs_secret_put_growth` (goal ≈ 1: flat), and
`cgs_audit_appends_per_s_4_threads` (four threads appending at once, as uvicorn's threadpool could).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sidecars.common.auditchain import GENESIS, event_hash
from sidecars.emulators.cgs import db
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.store import Store

HISTORY = 10_000
ROUNDS = 100
MEMBER = "a" * 64


def _median_ms(action: Callable[[int], object], rounds: int = ROUNDS) -> float:
    samples = []
    for n in range(rounds):
        started = time.perf_counter()
        action(n)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _prefill_events(path: Path, contract_id: str, count: int) -> None:
    """A chain of `count` events written in one transaction (appending them one by one would take minutes)."""
    events, prev = [], GENESIS
    for seqno in range(1, count + 1):
        data = {"n": seqno, "padding": "x" * 200}
        digest = event_hash(prev, seqno, "0" * 13, "bench", f"e{seqno}", data)
        events.append({"seqno": seqno, "timestamp": "0" * 13, "scope": "bench", "id": f"e{seqno}", "data": data,
                       "prev_hash": prev, "hash": digest})
        prev = digest
    conn = db.connect(path)
    with db.transaction(conn):
        db.insert_events(conn, contract_id, events)
    conn.close()


def _prefill_secrets(path: Path, contract_id: str, count: int) -> None:
    conn = db.connect(path)
    with db.transaction(conn):
        db.upsert_records(conn, (("secrets", json.dumps([contract_id, f"{MEMBER}_old{n}"]), json.dumps("x" * 200))
                                 for n in range(count)))
    conn.close()


def _store_with_contract(path: Path, history: int) -> Store:
    store = Store(path)
    store.add_member(MEMBER, "alice", "cert")
    store.put_contract("c", {}, None)
    store.close()
    _prefill_secrets(path, "c", history)
    return Store(path)


def _threaded_appends_per_s(audit: AuditLog, threads: int = 4, each: int = 50) -> float:
    def work(worker: int) -> None:
        for n in range(each):
            audit.append(f"t{worker}", "bench", f"e{n}", {"n": n})

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return threads * each / (time.perf_counter() - started)


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ccr-bench-cgs-") as tmp:
        base = Path(tmp)
        _prefill_events(base / "long.db", "c", HISTORY)
        empty, long = AuditLog(base / "empty.db"), AuditLog(base / "long.db")
        append_0 = _median_ms(lambda n: empty.append("c", "bench", f"b{n}", {"n": n, "padding": "x" * 200}))
        append_10k = _median_ms(lambda n: long.append("c", "bench", f"b{n}", {"n": n, "padding": "x" * 200}))
        assert long.head("c")["seqno"] == HISTORY + ROUNDS
        small, large = _store_with_contract(base / "s0.db", 0), _store_with_contract(base / "s10k.db", HISTORY)
        secret_0 = _median_ms(lambda n: small.put_secret("c", MEMBER, f"new{n}", "v" * 200))
        secret_10k = _median_ms(lambda n: large.put_secret("c", MEMBER, f"new{n}", "v" * 200))
        threaded = _threaded_appends_per_s(AuditLog(base / "threads.db"))
    return {"cgs_audit_append_ms_at_0": append_0, "cgs_audit_append_ms_at_10000": append_10k,
            "cgs_audit_append_growth": append_10k / append_0,
            "cgs_secret_put_ms_at_0": secret_0, "cgs_secret_put_ms_at_10000": secret_10k,
            "cgs_secret_put_growth": secret_10k / secret_0,
            "cgs_audit_appends_per_s_4_threads": threaded}


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key} = {value:.4g}")
