"""The audit log: append-only, sequence-numbered, timestamped and hash-chained (see
`sidecars.common.auditchain`), one chain per contract. Events live in memory and in `events.jsonl`;
each listing carries the head (seqno and hash of the last event)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ...common.auditchain import GENESIS, event_hash


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
