"""The audit log: append-only, sequence-numbered, timestamped and hash-chained (see
`sidecars.common.auditchain`), one chain per contract. Events live in the stand-in's database (see `db`),
each appended in a transaction committed before `append` returns; each listing carries the head (seqno and
hash of the last event). Appending and reading the head cost the same however long the chain is: heads are
kept in memory once read, and the events table is keyed by (contract, seqno).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ...common.auditchain import GENESIS, event_hash
from . import db

_SELECT = f"SELECT {', '.join(db.EVENT_COLUMNS)} FROM events"


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._conn = db.connect(path)
        self._heads: dict[str, dict[str, Any]] = {}

    def append(self, contract_id: str, scope: str, event_id: str, data: Any,
               timestamp_ms: int | None = None) -> dict[str, Any]:
        with self._lock:
            head = self._head(contract_id)
            seqno = head["seqno"] + 1
            timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)).zfill(13)
            event = {"seqno": seqno, "timestamp": timestamp, "scope": scope, "id": event_id, "data": data,
                     "prev_hash": head["hash"],
                     "hash": event_hash(head["hash"], seqno, timestamp, scope, event_id, data)}
            with db.transaction(self._conn):
                db.insert_events(self._conn, contract_id, [event])
            self._heads[contract_id] = {"seqno": seqno, "hash": event["hash"]}
            return event

    def events(self, contract_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(f"{_SELECT} WHERE contract = ? ORDER BY seqno", (contract_id,)).fetchall()
        return [db.event_of(row) for row in rows]

    def page(self, contract_id: str, first: int, last: int) -> list[dict[str, Any]]:
        """The events with first <= seqno <= last, in order: an index range, whatever the chain's length."""
        with self._lock:
            rows = self._conn.execute(f"{_SELECT} WHERE contract = ? AND seqno BETWEEN ? AND ? ORDER BY seqno",
                                      (contract_id, first, last)).fetchall()
        return [db.event_of(row) for row in rows]

    def head(self, contract_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._head(contract_id))

    def _head(self, contract_id: str) -> dict[str, Any]:
        head = self._heads.get(contract_id)
        if head is None:
            row = self._conn.execute("SELECT seqno, hash FROM events WHERE contract = ? ORDER BY seqno DESC LIMIT 1",
                                     (contract_id,)).fetchone()
            head = {"seqno": row[0], "hash": row[1]} if row else {"seqno": 0, "hash": GENESIS}
            self._heads[contract_id] = head
        return head

    def close(self) -> None:
        self._conn.close()
