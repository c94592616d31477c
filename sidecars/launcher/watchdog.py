"""The room's watchdog: while the app runs, the launcher asks every other sidecar's `/status` and reports
each one that stops answering.

It lives in the launcher because the launcher is in the container group on Confidential ACI too: the
sidecars are other containers there (no shared process table, no parent to reap them), and their loopback
`/status` is the one sign of life that looks the same in a group and in `ccr room up`. A sidecar is lost
when it has not answered for `lost_after_s` (refused, reset or timed out: killed, crashed or frozen); what
then happens to the app is the sidecar's `FailurePolicy`, applied by the launcher (`Launcher._sidecar_lost`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from ..common.sidecar import FailurePolicy


@dataclass
class SidecarLoss:
    sidecar: str
    policy: FailurePolicy
    #: the last error seen asking its /status
    error: str
    #: wall-clock time it was declared lost
    at: float
    app_stopped: bool = False
    #: the loss's audit event was acknowledged by CGS (None: not tried yet)
    audited: bool | None = None

    def as_json(self) -> dict:
        return {"policy": self.policy.value, "error": self.error, "at": self.at, "app_stopped": self.app_stopped,
                "audited": self.audited}


OnLost = Callable[[SidecarLoss], Awaitable[None]]


class Watchdog:
    def __init__(self, status_urls: Mapping[str, str], policies: Mapping[str, str], *, interval_s: float,
                 lost_after_s: float, on_lost: OnLost):
        self.status_urls = dict(status_urls)
        self.policies = {name: FailurePolicy(policies.get(name, FailurePolicy.STOP_APP))
                         for name in self.status_urls}
        self.interval_s = interval_s
        self.lost_after_s = lost_after_s
        self.on_lost = on_lost
        self.lost: dict[str, SidecarLoss] = {}
        #: the losses being handled (each on its own: a stop or an audit that hangs delays no other)
        self.handling: set[asyncio.Task] = set()

    async def run(self) -> None:
        """Until cancelled; each round asks every sidecar at once, so a frozen one delays no other."""
        loop = asyncio.get_running_loop()
        last_seen = {name: loop.time() for name in self.status_urls}
        # Its own client: a sidecar that hangs must not hold a connection the launcher's other calls share.
        async with httpx.AsyncClient(timeout=self.lost_after_s) as http:
            while True:
                watched = [n for n in self.status_urls if n not in self.lost]
                answers = await asyncio.gather(*(self._alive(http, self.status_urls[n]) for n in watched))
                now = loop.time()
                for name, error in zip(watched, answers, strict=True):
                    if error is None:
                        last_seen[name] = now
                        continue
                    if now - last_seen[name] >= self.lost_after_s:
                        loss = SidecarLoss(name, self.policies[name], error, time.time())
                        self.lost[name] = loss
                        task = asyncio.create_task(self.on_lost(loss))
                        self.handling.add(task)
                        task.add_done_callback(self.handling.discard)
                await asyncio.sleep(self.interval_s)

    @staticmethod
    async def _alive(http: httpx.AsyncClient, url: str) -> str | None:
        """None if the sidecar answers at all (a 503 is a live sidecar saying something); else why not."""
        try:
            await http.get(url)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None
