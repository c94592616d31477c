"""The audit log: append-only, sequence-numbered, timestamped and hash-chained (see
`sidecars.common.auditchain`), one chain per contract. Events live in the stand-in's database (see `db`),
each appended in a transaction committed before `append` returns; each listing carries the head (seqno and
hash of the last event). Appending and reading the head cost the same however long the chain is: heads are
kept in memory once read, and the events table is keyed by (contract, seqno).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...common.auditchain import GENESIS, event_hash
from . import db

_MAX_SEQNO = 2**63 - 1
_SELECT = f"SELECT {', '.join(db.EVENT_COLUMNS)} FROM events"


class AuditLog:
    def __init__(self, path: Path | db.Database):
        self.db = db.open_database(path)
        self.path = self.db.path
        self._lock = self.db.lock
        self._conn = self.db.conn
        self._heads: dict[str, dict[str, Any]] = {}
        # A head read inside a transaction that is rolled back may be one that never was: read them again.
        self.db.on_rollback(self._heads.clear)

    def append(self, contract_id: str, scope: str, event_id: str, data: Any,
               timestamp_ms: int | None = None) -> dict[str, Any]:
        with self._lock:
            head = self._head(contract_id)
            seqno = head["seqno"] + 1
            timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)).zfill(13)
            event = {"seqno": seqno, "timestamp": timestamp, "scope": scope, "id": event_id, "data": data,
                     "prev_hash": head["hash"],
                     "hash": event_hash(head["hash"], seqno, timestamp, scope, event_id, data)}
            with self.db.transaction() as conn:
                db.insert_events(conn, contract_id, [event])
                self._heads[contract_id] = {"seqno": seqno, "hash": event["hash"]}
            return event

    def events(self, contract_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(f"{_SELECT} WHERE contract = ? ORDER BY seqno", (contract_id,)).fetchall()
        return [db.event_of(row) for row in rows]

    def page(self, contract_id: str, first: int, last: int, *, event_id: str | None = None,
             scope: str | None = None) -> list[dict[str, Any]]:
        """The events with first <= seqno <= last (and the id and scope, when given), in order: a range of
        the primary key, however long the chain."""
        where, params = self._filters(event_id, scope)
        # Query parameters reach here unbounded; SQLite integers are 64-bit.
        first, last = (min(max(bound, 0), _MAX_SEQNO) for bound in (first, last))
        with self._lock:
            rows = self._conn.execute(f"{_SELECT} WHERE contract = ? AND seqno BETWEEN ? AND ?{where} ORDER BY seqno",
                                      (contract_id, first, last, *params)).fetchall()
        return [db.event_of(row) for row in rows]

    def latest(self, contract_id: str, *, event_id: str | None = None, scope: str | None = None
               ) -> dict[str, Any] | None:
        """The last event (with the id and scope, when given): the key read backwards from the head."""
        where, params = self._filters(event_id, scope)
        with self._lock:
            row = self._conn.execute(f"{_SELECT} WHERE contract = ?{where} ORDER BY seqno DESC LIMIT 1",
                                     (contract_id, *params)).fetchone()
        return db.event_of(row) if row else None

    @staticmethod
    def _filters(event_id: str | None, scope: str | None) -> tuple[str, tuple[str, ...]]:
        clauses = [(" AND id = ?", event_id), (" AND scope = ?", scope)]
        return "".join(c for c, v in clauses if v is not None), tuple(v for _, v in clauses if v is not None)

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
        self.db.close()
