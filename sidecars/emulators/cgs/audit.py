"""The audit log: append-only, sequence-numbered, timestamped and hash-chained, one chain per contract.

Each event's hash is sha256 over its predecessor's hash and the canonical JSON of (seqno, timestamp, scope,
id, data); the first event links to 64 zeros. Anyone holding the list can recompute the chain: altering an
event breaks its own hash, removing one breaks its successor's link, and the service-signed head (seqno and
hash of the last event) exposes a truncated tail. Events live in memory and in `events.jsonl`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev: str, seqno: int, timestamp: str, scope: str, event_id: str, data: Any) -> str:
    body = canonical({"seqno": seqno, "timestamp": timestamp, "scope": scope, "id": event_id, "data": data})
    return hashlib.sha256(prev.encode() + body).hexdigest()


def verify_chain(events: list[dict[str, Any]], head: dict[str, Any] | None = None) -> list[str]:
    """Problems found in a full, ordered event list (empty when intact)."""
    problems: list[str] = []
    prev = GENESIS
    for expected_seqno, event in enumerate(events, start=1):
        seqno = event.get("seqno")
        if seqno != expected_seqno:
            problems.append(f"seqno {expected_seqno}: missing (next event is seqno {seqno})")
            break
        if event.get("prev_hash") != prev:
            problems.append(f"seqno {seqno}: does not link to the event before it (removed or reordered)")
        recomputed = event_hash(prev, seqno, event.get("timestamp", ""), event.get("scope", ""),
                                event.get("id", ""), event.get("data"))
        if recomputed != event.get("hash"):
            problems.append(f"seqno {seqno}: content does not match its hash (altered)")
        prev = event.get("hash", "")
    if head is not None and not problems:
        last_seqno = events[-1]["seqno"] if events else 0
        if head.get("seqno") != last_seqno or head.get("hash") != (events[-1]["hash"] if events else GENESIS):
            problems.append(f"head: the service reports seqno {head.get('seqno')} but the list ends at "
                            f"seqno {last_seqno} (events missing at the end)")
    return problems


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._chains: dict[str, list[dict[str, Any]]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self._chains.setdefault(record.pop("contract"), []).append(record)
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - held open for appends until close()

    def append(self, contract_id: str, scope: str, event_id: str, data: Any,
               timestamp_ms: int | None = None) -> dict[str, Any]:
        with self._lock:
            chain = self._chains.setdefault(contract_id, [])
            prev = chain[-1]["hash"] if chain else GENESIS
            seqno = len(chain) + 1
            timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)).zfill(13)
            event = {"seqno": seqno, "timestamp": timestamp, "scope": scope, "id": event_id, "data": data,
                     "prev_hash": prev, "hash": event_hash(prev, seqno, timestamp, scope, event_id, data)}
            self._file.write(json.dumps({"contract": contract_id, **event}, separators=(",", ":")) + "\n")
            chain.append(event)
            return event

    def events(self, contract_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._chains.get(contract_id, []))

    def head(self, contract_id: str) -> dict[str, Any]:
        with self._lock:
            chain = self._chains.get(contract_id, [])
            return {"seqno": chain[-1]["seqno"], "hash": chain[-1]["hash"]} if chain else {"seqno": 0, "hash": GENESIS}

    def close(self) -> None:
        self._file.close()
