"""The audit hash chain: how events are linked and how anyone holding the list verifies it.

Each event's hash is sha256 over its predecessor's hash and the canonical JSON of (seqno, timestamp,
scope, id, data); the first event links to 64 zeros. Altering an event breaks its own hash, removing one
breaks its successor's link, and comparing with the service's head (or a head seen earlier) exposes a
truncated tail.
"""

from __future__ import annotations

import hashlib
import json
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
