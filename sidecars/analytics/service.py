"""The analytics app: the room's run API (design section 3), served behind the proxy.

- `POST /queries/{queryId}/run` `{runId?, dryRun?, startDate?, endDate?}` → 202 `{runId, status}` (the same
  runId and request again → 200, the same run; another request under that runId → 409 RunIdConflict)
- `GET /runs/{runId}` → the run (`runs.Run.view`); `GET /queries/{queryId}/runs` → `{value: [run, ...]}`
- errors `{"error": {"code", "message"}}`, one line.

Every request is a contract member's signed request (`auth`), checked before its body is parsed. A run is
prepared in the request (`prepare`: documents, approvals, consents, SQL guards, sink), so a refusal is the
answer to the POST itself and is audited; an accepted run is queued for the one worker thread (Spark in local
mode uses the room's cores: runs go one at a time). While a run's Spark job runs, a watcher re-checks the
execution consent of the query and of every dataset it reads every second; on a revocation it cancels the
job and the run ends `revoked`, with nothing published (the engine writes the sink only once every segment
is done, file by file, checking for a cancel between files).

The Spark session is started before the port is opened, so the first request finds it warm.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..common.errors import BadRequest, CcrError, ConfigError
from ..common.http import create_app, serve
from . import runs as runstore
from .auth import Member, MemberDirectory, ReplayGuard, RequestAuthenticator
from .documents import EPSILON_UNITS
from .engine import DatasetSource, Engine, RunCancelled
from .prepare import Prepared, parse_run_body, prepare
from .roomgov import AnalyticsGovernance
from .runs import Run, RunRequest, RunStore

log = logging.getLogger(__name__)
#: The run request is four small fields; anything bigger is refused before it is read.
MAX_BODY_BYTES = 4096
WATCH_INTERVAL_S = 1.0
#: Consecutive failed consent checks (governance unreachable) after which a running query is stopped:
#: consent that cannot be confirmed is not consent, but one lost request should not kill a long job.
MAX_UNCONFIRMED_CHECKS = 3
#: A query's document id (the documents' name pattern).
QUERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ServiceConfig:
    governance_url: str
    mount_root: Path
    scratch: Path
    watch_interval_s: float = WATCH_INTERVAL_S
    replay_window_s: float = 60.0
    #: runs waiting or running at once; more are refused (429) rather than queued without bound
    max_active_runs: int = 16


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


class Analytics:
    """The app's state: runs, the engine, governance, and the worker that runs one query at a time."""

    def __init__(self, config: ServiceConfig, engine: Engine, gov: AnalyticsGovernance):
        self.config = config
        self.engine = engine
        self.gov = gov
        self.store = RunStore(config.scratch / "runs.sqlite")
        self.directory = MemberDirectory(gov.members)
        self.auth = RequestAuthenticator(self.directory, ReplayGuard(config.replay_window_s))
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-run")

    def close(self) -> None:
        self.worker.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    # -- audit
    def _audit(self, outcome: str, run: Run, **details: Any) -> None:
        event = {"event": f"analytics.run.{outcome}", "queryId": run.request.query_id, "runId": run.run_id,
                 "member": run.submitted_by, "datasets": list(run.datasets), "dryRun": run.request.dry_run,
                 **({"epsilonSpent": run.epsilon_spent} if run.epsilon_spent else {}),
                 **{key: value for key, value in details.items() if value is not None}}
        self.gov.audit(event, scope="analytics")

    def _end(self, run: Run, status: str, outcome: str, error: CcrError | None = None, **details: Any) -> Run:
        """Record the run's end, then audit it. An audit that is not acknowledged is logged: the run's end
        already happened (nothing more is published either way)."""
        run = self.store.save(replace(
            run, status=status, ended_at=time.time(),
            error_code=error.code if error else None, error_message=_one_line(error.message) if error else None))
        try:
            self._audit(outcome, run, reason=run.error_message, **details)
        except CcrError as exc:
            log.error("run %s ended %s but its audit failed: %s", run.run_id, status, exc.message)
        return run

    # -- submit (in a request thread)
    def submit(self, member: Member, query_id: str, body: dict[str, Any]) -> tuple[Run, bool]:
        if not QUERY_ID.fullmatch(query_id):
            raise BadRequest("queryId must be 1-64 letters, digits, '.', '_' or '-'", code="InvalidQueryId")
        run_id = runstore.check_run_id(body["runId"]) if body.get("runId") else runstore.new_run_id()
        request = RunRequest(query_id, bool(body.get("dryRun")), body.get("startDate"), body.get("endDate"))
        if not request.dry_run and not self.store.exists(run_id) and self.store.active() >= self.config.max_active_runs:
            raise CcrError(f"{self.config.max_active_runs} runs are already waiting or running; submit again later",
                           code="TooManyRuns", http_status=429)
        run, created = self.store.create(Run(run_id, request, member.name, status=runstore.PREPARING))
        if not created:
            return run, False
        started = time.monotonic()
        reads: list[str] = []
        try:
            prepared = prepare(self.gov, query_id, request, self.directory.by_id(), self.config.mount_root, reads)
        except CcrError as exc:
            self._end(replace(run, datasets=tuple(reads), timings={"prepare": round(time.monotonic() - started, 3)}),
                      runstore.REFUSED if exc.http_status < 500 else runstore.FAILED,
                      "refused" if exc.http_status < 500 else "failed", exc)
            raise
        run = self.store.save(replace(run, datasets=tuple(prepared.datasets),
                                      timings={"prepare": round(time.monotonic() - started, 3)}))
        if prepared.privacy and not request.dry_run:
            # The ledger in CGS is where concurrent runs serialise: spent (and audited there) before Spark
            # starts, refused whole when a budget lacks room, and no run without CGS's acknowledgement.
            try:
                self.gov.spend_privacy_budget(run_id, query_id)
            except CcrError as exc:
                self._end(run, runstore.REFUSED if exc.http_status < 500 else runstore.FAILED,
                          "refused" if exc.http_status < 500 else "failed", exc)
                raise
            run = self.store.save(replace(run, epsilon_spent=max(prepared.privacy.values()) / EPSILON_UNITS))
        # Audited before anything runs: no acknowledgement, no run.
        try:
            self._audit("accepted", run)
        except CcrError as exc:
            self._end(run, runstore.FAILED, "failed", exc)
            raise
        if request.dry_run:
            return self._end(run, runstore.VALIDATED, "validated"), True
        run = self.store.save(replace(run, status=runstore.QUEUED))
        self.worker.submit(self._run_phase, run.run_id, prepared)
        return run, True

    # -- the run phase (in the worker thread)
    def _run_phase(self, run_id: str, prepared: Prepared) -> None:
        try:
            self._run_prepared(run_id, prepared)
        except Exception as exc:  # nothing may leave a run "running" forever: a worker exception is otherwise lost
            log.exception("run %s failed", run_id)
            run = self.store.get(run_id)
            if run.status not in runstore.FINAL_STATUSES:
                error = exc if isinstance(exc, CcrError) else CcrError(f"the run failed: {_one_line(exc, 200)}",
                                                                       code="RunFailed")
                self._end(run, runstore.FAILED, "failed", error)

    def _run_prepared(self, run_id: str, prepared: Prepared) -> None:
        run = self.store.save(replace(self.store.get(run_id), status=runstore.RUNNING, started_at=time.time()))
        cancelled = threading.Event()
        revoked: list[CcrError] = []
        watcher = threading.Thread(target=self._watch, args=(run_id, prepared, cancelled, revoked),
                                   name=f"consent-{run_id}", daemon=True)
        sources = [DatasetSource(prepared.datasets[name], view, self.config.mount_root / prepared.datasets[name].store)
                   for view, name in prepared.views.items()]
        # Consent may have been revoked while the run was queued: checked once more before Spark starts.
        problem = self._consent_problem(prepared)
        if problem is not None:
            self._ended_by_cancel(run, [problem], problem)
            return
        watcher.start()
        try:
            result = self.engine.run(prepared.query, sources, prepared.sink, run_id=run_id, cancelled=cancelled,
                                     date_range=prepared.date_range)
        except RunCancelled as exc:
            self._ended_by_cancel(run, revoked, exc)
            return
        except CcrError as exc:
            if cancelled.is_set():
                self._ended_by_cancel(run, revoked, exc)
            else:
                status = runstore.REFUSED if exc.http_status < 500 else runstore.FAILED
                self._end(self.store.get(run_id), status, status, exc)
            return
        except Exception as exc:  # a bug or a Spark failure we have no class for: one line, never a trace
            log.exception("run %s failed", run_id)
            self._end(self.store.get(run_id), runstore.FAILED, "failed",
                      CcrError(f"the Spark job failed: {_one_line(exc, 200)}", code="RunFailed"))
            return
        finally:
            cancelled.set()  # also stops the watcher
            watcher.join(timeout=5)
        run = self.store.get(run_id)
        timings = {**run.timings, **{key: round(value, 3) for key, value in result.timings.items()}}
        run = replace(run, timings=timings, output=tuple(s.path for s in result.segments),
                      rows_written=sum(s.rows_written for s in result.segments),
                      groups_suppressed=sum(s.groups_suppressed for s in result.segments),
                      rows_filtered=sum(s.rows_filtered for s in result.segments))
        self._end(run, runstore.SUCCEEDED, "succeeded", rowsWritten=run.rows_written,
                  groupsSuppressed=run.groups_suppressed)

    def _ended_by_cancel(self, run: Run, revoked: list[CcrError], exc: CcrError) -> None:
        run = self.store.get(run.run_id)
        if revoked and revoked[0].code == "ConsentUnconfirmed":
            self._end(run, runstore.FAILED, "failed", revoked[0])
        elif revoked:
            self._end(run, runstore.REVOKED, "revoked", revoked[0])
        else:
            self._end(run, runstore.FAILED, "failed", exc)

    def _consent_problem(self, prepared: Prepared) -> CcrError | None:
        """The revocation that stops the run (the query's or a dataset's consent disabled), or None."""
        for kind, document_id in [("query", prepared.query_id), *(("dataset", name) for name in prepared.datasets)]:
            status = self.gov.document_consent(document_id)
            if not status.enabled:
                reason = status.reason_message or status.reason_code or "disabled"
                return CcrError(f"execution consent for {kind} {document_id!r} was revoked: {reason}",
                                code="ConsentRevoked", http_status=403)
        return None

    def _watch(self, run_id: str, prepared: Prepared, cancelled: threading.Event, revoked: list[CcrError]) -> None:
        """Re-check the consent of the query and of every dataset until the run ends; cancel it on a revoke."""
        unconfirmed = 0
        while not cancelled.wait(self.config.watch_interval_s):
            try:
                problem = self._consent_problem(prepared)
                unconfirmed = 0
            except CcrError as exc:
                problem = None
                unconfirmed += 1
                log.warning("run %s: consent check failed (%d): %s", run_id, unconfirmed, exc.message)
                if unconfirmed >= MAX_UNCONFIRMED_CHECKS:
                    problem = CcrError(f"execution consent could not be confirmed {unconfirmed} times in a row "
                                       f"({_one_line(exc.message, 150)}): the run was stopped",
                                       code="ConsentUnconfirmed", http_status=503)
            if problem is not None:
                revoked.append(problem)
                cancelled.set()
                self.engine.cancel(run_id)
                return


def request_target(request: Request) -> str:
    """The path?query the client signed, as it sent it (percent-encoding kept)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    return raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


def build_app(analytics: Analytics) -> FastAPI:
    app = create_app("ccr analytics", max_body_bytes=MAX_BODY_BYTES)

    async def authenticate(request: Request) -> tuple[Member, bytes]:
        """The signing member, checked before the body is read or parsed; then the body it signed."""
        member, signed = await run_in_threadpool(analytics.auth.caller, request.headers.get("authorization"))
        body = await request.body()
        analytics.auth.verify(member, signed, request.method, request_target(request), body)
        return member, body

    @app.post("/queries/{query_id}/run")
    async def run_query(query_id: str, request: Request) -> JSONResponse:
        member, body = await authenticate(request)
        run, created = await run_in_threadpool(analytics.submit, member, query_id, parse_run_body(body))
        answer = {"runId": run.run_id, "status": run.status}
        if run.error_code:
            answer["error"] = {"code": run.error_code, "message": run.error_message}
        return JSONResponse(answer, status_code=202 if created else 200)

    @app.get("/runs/{run_id}")
    async def get_run(run_id: str, request: Request) -> dict[str, Any]:
        await authenticate(request)
        return (await run_in_threadpool(analytics.store.get, run_id)).view()

    @app.get("/queries/{query_id}/runs")
    async def query_runs(query_id: str, request: Request) -> dict[str, Any]:
        await authenticate(request)
        return {"value": [run.view() for run in await run_in_threadpool(analytics.store.of_query, query_id)]}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        # unauthenticated liveness for the launcher: says nothing about runs or members
        return {"status": "ok"}

    return app


def _process_age_s() -> float:
    """Seconds since this process started (Linux: its start time in /proc against the uptime), so that the
    startup log counts the interpreter and imports too; 0 when /proc does not say."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def cmd_serve(args: argparse.Namespace) -> int:
    """`ccr analytics serve`: start Spark (warm), then serve the run API."""
    started = time.monotonic() - _process_age_s()
    governance_url = args.governance_url or os.environ.get("CCR_GOVERNANCE_URL")
    if not governance_url:
        raise ConfigError("no governance URL: pass --governance-url or run inside a room (CCR_GOVERNANCE_URL)")
    config = ServiceConfig(governance_url=governance_url, mount_root=Path(args.mount_root), scratch=Path(args.scratch))
    config.scratch.mkdir(parents=True, exist_ok=True)
    engine = Engine(config.scratch / "spark")
    session_s = engine.start()
    print(f"analytics: Spark session warm in {session_s:.1f} s ({time.monotonic() - started:.1f} s since the "
          "process started)",
          file=sys.stderr, flush=True)
    gov = AnalyticsGovernance(governance_url, start_wait_s=30.0)
    analytics = Analytics(config, engine, gov)
    try:
        serve(build_app(analytics), args.host, args.port, ready_file=getattr(args, "ready_file", None),
              on_ready=lambda port: print(f"analytics: serving on port {port} "
                                          f"({time.monotonic() - started:.1f} s since the process started)",
                                          file=sys.stderr, flush=True))
    finally:
        analytics.close()
        engine.stop()
        gov.close()
    return 0
