"""The CGS stand-in's database: one SQLite file in the state directory holding the governance records and the
audit log.

An answer the stand-in sends is a promise that what it acknowledged is kept, so every change is one
transaction committed (and, with `synchronous=FULL` in WAL mode, fsync'd) before the answer goes out: a
`kill -9` or a power cut loses only writes nobody was told about. Writes touch only the rows they change,
so their cost does not grow with history.

State directories written before the database existed (`state.json`, `events.jsonl`) are imported once,
at start, and the old files renamed `*.imported`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DATABASE = "cgs.db"

# `records` holds the governance state one row per entry of `store.State` (kind = the field, key = the JSON
# list of the entry's keys); `events` is the hash-chained audit log, its primary key the index that serves
# a contract's pages and head; `counters` the transaction seqno (see `Database.transaction`);
# `room_signatures` the digest of every signed room write accepted (see `room.SignatureLedger`).
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    contract  TEXT NOT NULL,
    seqno     INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    scope     TEXT NOT NULL,
    id        TEXT NOT NULL,
    data      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (contract, seqno)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('seqno', 0);
CREATE TABLE IF NOT EXISTS room_signatures (
    digest BLOB PRIMARY KEY,
    seqno  INTEGER NOT NULL
) WITHOUT ROWID;
"""

EVENT_COLUMNS = ("seqno", "timestamp", "scope", "id", "data", "prev_hash", "hash")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit, see `transaction`). It may be used from
    any thread; its owner serialises use with a lock."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise sqlite3.OperationalError(f"{path}: cannot use write-ahead logging (journal mode {mode})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails half-way for a lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Database:
    """One connection to the database, shared by the store and the audit log, and the one lock that serialises
    its use and their memory. A member's change and the audit record that says who made it are written in
    one transaction (`transaction` nests: only the outermost commits), so the log never misses a change and
    never records one that did not happen.

    Each committed (outermost) transaction bumps the durable seqno in the same SQLite transaction, so the
    seqno names exactly the writes that are on disk, never goes back, and is never reused after a restart:
    it is the stand-in's `x-ms-ccf-transaction-id` (see `transactions`). Callbacks registered with
    `on_commit` learn each committed seqno.

    What the store and the log keep in memory may run ahead of the database inside a transaction; each
    registers a callback (`on_rollback`) that puts its memory back in line when the transaction is rolled
    back."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = connect(path)
        self.lock = threading.RLock()
        self._depth = 0
        self._on_rollback: list[Callable[[], None]] = []
        self._on_commit: list[Callable[[int], None]] = []
        self.committed_seqno: int = self.conn.execute("SELECT value FROM counters WHERE name = 'seqno'").fetchone()[0]

    def on_rollback(self, callback: Callable[[], None]) -> None:
        self._on_rollback.append(callback)

    def on_commit(self, callback: Callable[[int], None]) -> None:
        """`callback(seqno)` after each transaction that committed, with the seqno it committed as."""
        self._on_commit.append(callback)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            if self._depth:  # inside another change: its outermost transaction commits both
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
                seqno = self.conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'seqno' "
                                          "RETURNING value").fetchall()[0][0]
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                for callback in self._on_rollback:
                    callback()
                raise
            finally:
                self._depth = 0
            self.committed_seqno = seqno
            for callback in self._on_commit:
                callback(seqno)

    def close(self) -> None:
        self.conn.close()


def open_database(path: Path | Database) -> Database:
    """`path`'s database, or the shared one given."""
    return path if isinstance(path, Database) else Database(path)


def upsert_records(conn: sqlite3.Connection, rows: Iterable[tuple[str, str, str]]) -> None:
    conn.executemany("INSERT INTO records (kind, key, value) VALUES (?, ?, ?) "
                     "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value", rows)


def delete_records(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> None:
    conn.executemany("DELETE FROM records WHERE kind = ? AND key = ?", keys)


def insert_events(conn: sqlite3.Connection, contract_id: str, events: Iterable[dict[str, Any]]) -> None:
    conn.executemany(
        "INSERT INTO events (contract, seqno, timestamp, scope, id, data, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ((contract_id, e["seqno"], e["timestamp"], e["scope"], e["id"], json.dumps(e["data"]), e["prev_hash"],
          e["hash"]) for e in events))


def event_of(row: tuple[Any, ...]) -> dict[str, Any]:
    """An `events` row (selected in EVENT_COLUMNS order) as the API shows it."""
    event = dict(zip(EVENT_COLUMNS, row, strict=True))
    event["data"] = json.loads(event["data"])
    return event


def import_legacy(state_dir: Path, conn: sqlite3.Connection, nesting: dict[str, int]) -> list[str]:
    """Import `state.json` and `events.jsonl` from a state directory of an older stand-in, once: each in one
    transaction, after which the file is renamed so it is never read again. Events are imported as they were
    (the chain is not re-hashed: a tampered old log stays detectably tampered). Returns what was imported."""
    imported = []
    state_file, events_file = state_dir / "state.json", state_dir / "events.jsonl"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        rows = [("version_counter", "[]", json.dumps(state.get("version_counter", 0)))]
        for kind, depth in nesting.items():
            rows += [(kind, json.dumps(keys), json.dumps(value))
                     for keys, value in _flatten(state.get(kind, {}), depth)]
        with transaction(conn):
            upsert_records(conn, rows)
        state_file.rename(state_file.with_name("state.json.imported"))
        imported.append(f"{state_file.name} ({len(rows) - 1} records)")
    if events_file.exists():
        chains: dict[str, list[dict[str, Any]]] = {}
        for line in events_file.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                chains.setdefault(record.pop("contract"), []).append(record)
        with transaction(conn):
            for contract_id, events in chains.items():
                insert_events(conn, contract_id, events)
        events_file.rename(events_file.with_name("events.jsonl.imported"))
        imported.append(f"{events_file.name} ({sum(map(len, chains.values()))} events)")
    return imported


def _flatten(value: Any, depth: int, keys: tuple[str, ...] = ()) -> Iterator[tuple[list[str], Any]]:
    if depth == 0:
        yield list(keys), value
        return
    for key, inner in value.items():
        yield from _flatten(inner, depth - 1, (*keys, key))
