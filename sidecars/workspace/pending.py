"""The sign-ins a workspace has under way: the PKCE verifier of each, by its OAuth state, used once."""

from __future__ import annotations

import secrets
import threading
import time

PENDING_LIFETIME_S = 600
MAX_PENDING = 64


class PendingSignIns:
    """The verifier of each sign-in under way, by its state; each is used once."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def add(self, verifier: str) -> str:
        state = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            for old in [s for s, (_v, t) in self._pending.items() if now - t > PENDING_LIFETIME_S]:
                del self._pending[old]
            while len(self._pending) >= MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[state] = (verifier, now)
        return state

    def take(self, state: str) -> str | None:
        with self._lock:
            entry = self._pending.pop(state, None)
        if entry is None or time.monotonic() - entry[1] > PENDING_LIFETIME_S:
            return None
        return entry[0]
