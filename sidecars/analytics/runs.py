"""The run store: every run the app accepted or refused, in one SQLite file under the scratch directory, so
that a restart of the app inside the same container still answers `GET /runs/{runId}`.

A run is idempotent by its runId: the same runId with the same request (query, dryRun, dates) is the same
run; with anything else it is a `RunIdConflict` (409). The request is kept as canonical JSON to compare.
A run that was queued, preparing or running when the process died cannot resume (its Spark job died with
it): opening the store marks such runs failed, naming why.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..common.errors import BadRequest, Conflict, NotFound

QUEUED, PREPARING, RUNNING = "queued", "preparing", "running"
SUCCEEDED, VALIDATED, REFUSED, FAILED, REVOKED = "succeeded", "validated", "refused", "failed", "revoked"
ACTIVE_STATUSES = (QUEUED, PREPARING, RUNNING)
FINAL_STATUSES = (SUCCEEDED, VALIDATED, REFUSED, FAILED, REVOKED)
#: A runId becomes a folder name in the sink (`<runId>/segment-N.csv`): nothing but this passes.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class RunIdConflict(Conflict):
    code = "RunIdConflict"


class RunNotFound(NotFound):
    code = "RunNotFound"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise BadRequest("runId must be 1-64 letters, digits, '_' or '-', starting with a letter or digit",
                         code="InvalidRunId")
    return run_id


def new_run_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class RunRequest:
    query_id: str
    dry_run: bool = False
    start_date: str | None = None
    end_date: str | None = None

    def canonical(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Run:
    run_id: str
    request: RunRequest
    submitted_by: str
    status: str = QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    rows_written: int = 0
    groups_suppressed: int = 0
    rows_filtered: int = 0
    output: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    #: a private run's ε, spent from each dataset's budget (CGS acknowledged it before the run was queued)
    epsilon_spent: float = 0.0

    def view(self) -> dict[str, Any]:
        """The run as `GET /runs/{runId}` answers it."""
        return {
            "runId": self.run_id, "queryId": self.request.query_id, "status": self.status,
            "submittedBy": self.submitted_by, "dryRun": self.request.dry_run,
            "startDate": self.request.start_date, "endDate": self.request.end_date,
            "createdAt": _iso(self.created_at), "startedAt": _iso(self.started_at), "endedAt": _iso(self.ended_at),
            "timings": dict(self.timings), "rowsWritten": self.rows_written,
            "groupsSuppressed": self.groups_suppressed, "rowsFiltered": self.rows_filtered,
            "output": list(self.output), "datasets": list(self.datasets), "epsilonSpent": self.epsilon_spent,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
        }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    query_id TEXT NOT NULL,
    request TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_query ON runs (query_id, created_at);
"""


class RunStore:
    """Thread-safe: the API's requests, the worker threads and the watcher all write runs."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._fail_interrupted()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _fail_interrupted(self) -> None:
        for run in self._select("SELECT record FROM runs", ()):
            if run.status in ACTIVE_STATUSES:
                self.save(replace(run, status=FAILED, ended_at=time.time(), error_code="RunInterrupted",
                                  error_message="the analytics app restarted while this run was "
                                                f"{run.status}; submit it again with a new runId"))

    def create(self, run: Run) -> tuple[Run, bool]:
        """Store a new run; or, for a runId already stored with the same request and member, that run
        (created False). Anything else under that runId is a RunIdConflict."""
        with self._lock:
            row = self._db.execute("SELECT record FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                                 (run.run_id, run.request.query_id, run.request.canonical(), run.submitted_by,
                                  run.created_at, _encode(run)))
                return run, True
        existing = _decode(row[0])
        if existing.request != run.request or existing.submitted_by != run.submitted_by:
            raise RunIdConflict(f"runId {run.run_id!r} is already used by a different run request; "
                                "choose another runId")
        return existing, False

    def save(self, run: Run) -> Run:
        with self._lock:
            self._db.execute("UPDATE runs SET record = ? WHERE run_id = ?", (_encode(run), run.run_id))
        return run

    def get(self, run_id: str) -> Run:
        runs = self._select("SELECT record FROM runs WHERE run_id = ?", (run_id,))
        if not runs:
            raise RunNotFound(f"no run {run_id!r}")
        return runs[0]

    def exists(self, run_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def active(self) -> int:
        """How many runs are waiting or running (prepared and not ended)."""
        return sum(run.status in (QUEUED, RUNNING) for run in self._select(
            "SELECT record FROM runs WHERE created_at > ?", (time.time() - 7 * 86400,)))

    def of_query(self, query_id: str) -> list[Run]:
        return self._select("SELECT record FROM runs WHERE query_id = ? ORDER BY created_at", (query_id,))

    def _select(self, sql: str, params: tuple) -> list[Run]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_decode(row[0]) for row in rows]


def _encode(run: Run) -> str:
    return json.dumps(asdict(run), sort_keys=True)


def _decode(text: str) -> Run:
    data = json.loads(text)
    data["request"] = RunRequest(**data["request"])
    data["output"] = tuple(data["output"])
    data["datasets"] = tuple(data["datasets"])
    return Run(**data)
