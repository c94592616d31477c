"""The room's evidence for a caller outside the room: the only part of skr the room's ingress serves.

The caller gives a nonce, never runtime data: the room makes the runtime data from the nonce itself, so the
report it signs binds that nonce and nothing a caller chose otherwise. (Evidence over a caller's runtime data
could carry the caller's public key, which MAA and Key Vault would then release a key to.)"""

from __future__ import annotations

import json
import re

#: where the room's ingress serves fresh evidence to anyone (POST {"nonce"}), on every endpoint's port
PUBLIC_EVIDENCE_PATH = "/.well-known/ccr/evidence"
#: skr's own route behind it
NONCE_EVIDENCE_PATH = "/attest/nonce"
#: 16 to 64 random bytes, in lowercase hex: enough to be unguessable, small enough to bound the request
NONCE = re.compile(r"[0-9a-f]{32,128}")
#: the most a nonce request may hold (Envoy refuses a longer body before skr sees it)
MAX_NONCE_REQUEST_BYTES = 1024


def runtime_data_for_nonce(nonce: str) -> bytes:
    """The runtime data the room's report binds (its REPORT_DATA is this data's SHA-256)."""
    if not NONCE.fullmatch(nonce):
        raise ValueError(f"a nonce is 32 to 128 lowercase hex digits, not {nonce[:16]!r}…")
    return json.dumps({"evidence-nonce": nonce}, separators=(",", ":")).encode()
