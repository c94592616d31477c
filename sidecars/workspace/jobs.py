"""Long work (publishing a dataset: checking, encrypting and uploading its files, then proposing it) as a job
the page polls, or follows as server-sent events, to draw a progress bar."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ..common.errors import CcrError
from .errors import FieldError, one_line, problem

log = logging.getLogger("ccr.workspace")
MAX_JOBS_KEPT = 256


class Job:
    def __init__(self, kind: str):
        self.id, self.kind = uuid.uuid4().hex, kind
        self.state, self.percent, self.step = "running", 0, "starting"
        self.error: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.changed = threading.Condition()
        self.version = 0

    def report(self, percent: int, step: str) -> None:
        with self.changed:
            self.percent, self.step = max(self.percent, min(100, percent)), step
            self.version += 1
            self.changed.notify_all()

    def _end(self, state: str, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        with self.changed:
            self.state, self.result, self.error = state, result, error
            if state == "succeeded":
                self.percent, self.step = 100, "done"
            self.version += 1
            self.changed.notify_all()

    def view(self) -> dict[str, Any]:
        with self.changed:
            return {"id": self.id, "kind": self.kind, "state": self.state, "percent": self.percent,
                    "step": self.step, "error": self.error, "result": self.result}

    def wait_change(self, seen: int, timeout: float) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.version != seen, timeout=timeout)
            return self.version


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, work: Callable[[Job], dict[str, Any]]) -> Job:
        job = Job(kind)
        with self._lock:
            if len(self._jobs) >= MAX_JOBS_KEPT:
                ended = [j for j in self._jobs.values() if j.state != "running"]
                for old in ended[: len(self._jobs) - MAX_JOBS_KEPT + 1]:
                    del self._jobs[old.id]
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id[:8]}", daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work: Callable[[Job], dict[str, Any]]) -> None:
        try:
            job._end("succeeded", result=work(job))
        except FieldError as exc:
            job._end("failed", error=exc.problems[0])
        except CcrError as exc:
            job._end("failed", error=problem(None, exc.message))
        except Exception as exc:  # a bug: the log keeps the traceback, the page one line
            log.exception("job %s failed", job.id)
            job._end("failed", error=problem(None, one_line(f"the job failed unexpectedly: {type(exc).__name__}")))

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise FieldError.one("jobId", f"no job {job_id[:64]!r}", http_status=404)
        return job
