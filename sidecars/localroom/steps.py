"""Startup as a sequence of named steps, each timed and printed, with teardown registered as it goes.

A failing step (or Ctrl-C) names the step and the reason, then everything already set up is undone in
reverse order. What was set up is also recorded in the room's state file, so `ccr room down` from another
shell can undo it too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import CcrError
from ..common.logs import get_logger

log = get_logger(__name__)
#: a room's state file, in its run directory
STATE_FILE = "room.json"


class StepFailed(CcrError):
    code = "StepFailed"

    def __init__(self, step: str, reason: str):
        self.step = step
        super().__init__(f"step '{step}' failed: {reason}")


@dataclass
class RoomState:
    """What a running room consists of, persisted as JSON in its run directory."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> RoomState:
        try:
            return cls(path, json.loads(path.read_text()))
        except FileNotFoundError:
            return cls(path, {})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        tmp.replace(self.path)

    def add(self, kind: str, item: Any) -> None:
        self.data.setdefault(kind, []).append(item)
        self.save()


@dataclass
class StepRunner:
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    timings: list[tuple[str, float]] = field(default_factory=list)
    _undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        except StepFailed:
            raise
        except CcrError as exc:
            self._report(name, started, failed=True)
            raise StepFailed(name, str(exc)) from exc
        except KeyboardInterrupt:
            self._report(name, started, failed=True)
            raise
        except Exception as exc:
            self._report(name, started, failed=True)
            raise StepFailed(name, f"{type(exc).__name__}: {exc}") from exc
        self._report(name, started, failed=False)

    def _report(self, name: str, started: float, *, failed: bool) -> None:
        elapsed = time.monotonic() - started
        self.timings.append((name, elapsed))
        self.out(f"{'FAILED' if failed else 'ok':>6}  {name:<40} {elapsed * 1000:8.0f} ms")

    def on_teardown(self, what: str, undo: Callable[[], None]) -> None:
        self._undo.append((what, undo))

    def teardown(self) -> list[str]:
        """Undo everything in reverse order; returns what could not be undone (and keeps going)."""
        problems = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # teardown must go on: one stuck piece must not leave the rest behind
                problems.append(f"{what}: {exc}")
                print(f"ccr: teardown of {what} failed: {exc}", file=sys.stderr)
        return problems
