"""The launcher sidecar: the last step of a room's startup, and the app's lifecycle.

Startup (ARCHITECTURE §6, step 5), each step failing closed and named in `GET /status`:
  1. wait for the other sidecars' `/status` (a timeout names the one that is not ready);
  2. the checks, side by side (each must pass; the first that fails, in this order, is the one named):
     execution consent from governance; the firewall's rules are in force, as the kernel holds them (the
     firewall's own check, run here); the container policy allows the app (policies/container.rego);
  3. launch with podman, audited (no acknowledgement from CGS: no launch).
Job mode: wait for the exit, audit the exit code, export logs (consent-gated by telemetry). API mode:
run until SIGTERM or until governance reports consent revoked (`POST /consent/revoked`), then stop.

While the app runs, the watchdog (watchdog.py) asks every other sidecar's `/status`; a sidecar lost is
handled as its record's `FailurePolicy` says (STOP_APP: the app is stopped first, then the loss audited;
REPORT: audited only), and listed in `GET /status` under `sidecars_lost`. If governance does not
acknowledge the audit (it may be the one lost), the loss is logged here and marked `audited: false`. The
launcher's own death is covered by the app's guard process (guard.py), which removes the app container.

API: `POST /gov/{app}/start` (manual start), `GET /gov/{app}/status` → `{status, exit_code}`,
`POST /gov/exportLogs`, `POST /gov/exportTelemetry` (forwarded to the telemetry sidecar), `GET /status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..common.bodylimit import KIB
from ..common.containers import app_container
from ..common.errors import CcrError, Conflict, NotFound, ProcessError, RemoteServiceError
from ..common.firewall_client import verify_firewall
from ..common.forkserver import ForkServerClient
from ..common.governance_client import GovernanceClient
from ..common.http import azure_error_body, create_app
from ..common.logs import get_logger
from ..common.otel import setup_telemetry, step_span
from ..common.room import SIDECAR_ENV, SPEC_ENV, read_sidecar_token
from ..common.sidecar import FailurePolicy
from .guard import RELEASE
from .podman import Podman
from .policy import ContainerPolicy, build_launch
from .run import AppProcess
from .sidecar import LauncherConfig
from .watchdog import SidecarLoss, Watchdog

log = get_logger(__name__)
# The only body this API reads is governance's notice of a revoked consent (a few hundred bytes).
MAX_BODY_BYTES = 64 * KIB
#: seconds the app gets to end on SIGTERM when a guarding sidecar is lost, before podman kills it
LOST_SIDECAR_STOP_S = 2.0


@dataclass
class LauncherState:
    # starting, waiting, checks, ready (manual start), launching, running, exited, failed, stopped
    phase: str = "starting"
    step: str | None = None
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    process: AppProcess | None = None
    #: the sidecars the watchdog found dead while the app ran
    lost: dict[str, SidecarLoss] = field(default_factory=dict)
    #: the platform kind the room's evidence comes from (sev-snp, simulated, mock), as skr's /status says
    platform: str | None = None

    def as_json(self) -> dict[str, Any]:
        app = self.process
        return {"status": self.phase, "step": self.step, "error": self.error, "steps": self.steps,
                "platform": self.platform,
                "sidecars_lost": {name: loss.as_json() for name, loss in self.lost.items()},
                "app": None if app is None else {"status": app.status, "exit_code": app.exit_code,
                                                   "container": app.launch.container_name}}


class Launcher:
    def __init__(self, config: LauncherConfig, podman: Podman | None = None):
        self.config = config
        self.podman = podman or Podman()
        self.state = LauncherState()
        # The app exactly as the CCE policy measured it (the same derivation as the container group's).
        self.group_app = app_container(config.spec, config.app_env)
        self.launch = build_launch(config.spec, self.group_app, mount_root=config.mount_root,
                                   netns=config.netns, container_name=config.container_name)
        token = read_sidecar_token(config.sidecar_token_file)
        self.gov = GovernanceClient(config.governance_url, scope="launcher", token=token)
        self.tracer = setup_telemetry("ccr-launcher").tracer
        self._http = httpx.AsyncClient(timeout=10)
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._watcher: asyncio.Task | None = None
        self._guard: asyncio.subprocess.Process | None = None
        self.watchdog = Watchdog(config.sidecar_status_urls, config.sidecar_failure_policies,
                                 interval_s=config.watch_interval_s, lost_after_s=config.lost_after_s,
                                 on_lost=self._sidecar_lost)
        self._watchdog: asyncio.Task | None = None

    # -- startup
    async def _step(self, name: str, action) -> None:
        self.state.step = name
        started = asyncio.get_running_loop().time()
        with step_span(self.tracer, f"launcher.{name}"):
            try:
                await action()
            except Exception as exc:
                self.state.steps.append({"step": name, "ok": False, "error": str(exc)})
                raise
        self.state.steps.append({"step": name, "ok": True,
                                 "ms": round((asyncio.get_running_loop().time() - started) * 1000, 1)})

    async def _checks(self, *checks: tuple[str, Any]) -> None:
        """Independent checks the launch needs, run side by side: the app waits for the slowest, not for their
        sum. Every one runs to its end; the first failure in the given order is raised, named as its step."""
        results = await asyncio.gather(*(self._step(name, action) for name, action in checks),
                                       return_exceptions=True)
        for (name, _action), result in zip(checks, results, strict=True):
            if isinstance(result, BaseException):
                self.state.step = name
                raise result
        self.state.step = None

    async def prepare(self) -> None:
        """Everything before the launch; on failure the launcher reports it and never launches."""
        try:
            self.state.phase = "waiting"
            await self._step("wait-for-sidecars", self._wait_for_sidecars)
            self.state.phase = "checks"
            await self._checks(
                ("execution-consent", lambda: asyncio.to_thread(self.gov.require_consent, "execution")),
                ("firewall-verify", self._verify_firewall), ("container-policy", self._check_policy))
            if self.config.spec.application.start == "auto":
                self.state.phase = "launching"
                await self._launch()
            else:
                self.state.phase = "ready"  # until POST /gov/{app}/start
        except CcrError as exc:
            self._fail(str(exc))
        except Exception as exc:  # an unexpected failure still fails closed, and says so
            log.exception("launcher startup failed")
            self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, reason: str) -> None:
        self.state.phase = "failed"
        self.state.error = f"{self.state.step}: {reason}" if self.state.step else reason
        log.error("not launching the app: %s", self.state.error)
        self._done.set()

    async def _wait_for_sidecars(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ready_timeout
        pending = dict(self.config.sidecar_status_urls)
        last: dict[str, str] = {}
        while pending:
            for name, url in list(pending.items()):
                try:
                    response = await self._http.get(url)
                    if response.status_code == 200:
                        del pending[name]
                        self._note_platform(response)
                        continue
                    last[name] = f"/status answered {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last[name] = f"unreachable ({type(exc).__name__})"
            if not pending:
                return
            if loop.time() > deadline:
                details = "; ".join(f"{n}: {last.get(n, 'no answer')}" for n in pending)
                raise ProcessError(f"not ready after {self.config.ready_timeout:g} s: {details}")
            await asyncio.sleep(0.1)

    def _note_platform(self, response: httpx.Response) -> None:
        """skr's /status names the platform its evidence comes from: every audit event says it too."""
        try:
            body = response.json()
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("platform"), str):
            self.state.platform = body["platform"][:40]

    def _audit(self, event: dict[str, Any]) -> None:
        # The platform kind in every event: a room on the mock or the simulator says so in CGS's log too.
        self.gov.audit({**event, "platform": self.state.platform or "unknown"})

    async def _verify_firewall(self) -> None:
        # The firewall (an init container) is gone: its own check reads the rules from this network namespace's
        # kernel tables, for the room this launcher runs in. Raises FirewallNotInForce naming each missing or
        # changed rule: no app without its firewall.
        room = {SPEC_ENV: self.config.spec.canonical_json(), SIDECAR_ENV: "firewall"}
        fork_server = ForkServerClient.from_environment()
        try:
            await asyncio.to_thread(verify_firewall, room, fork_server=fork_server)
        finally:
            if fork_server is not None:
                fork_server.close()

    async def _check_policy(self) -> None:
        try:
            digest = await asyncio.to_thread(self.podman.image_digest, self.launch.image)
        except ProcessError:
            digest = "(no local image)"
        policy = ContainerPolicy(self.config.spec, self.group_app)
        policy.check(self.launch, digest)

    # -- the app
    async def start_app(self) -> None:
        """A manual start (`startType: Manual`): only once every check has passed."""
        async with self._lock:
            if self.state.phase != "ready":
                raise Conflict(f"the app cannot start now: the launcher is {self.state.phase}")
            self.state.phase = "launching"
        await self._launch()

    async def _launch(self) -> None:
        async with self._lock:
            self.state.step = "launch"
            process = AppProcess(self.launch, self.podman)
            await asyncio.to_thread(self._audit, {"step": "launch", "app": self.config.spec.application.name,
                                                     "image": self.launch.image})
            with step_span(self.tracer, "launcher.launch", image=self.launch.image):
                await self._start_guard()
                await process.start(self._forward_line)
                self.state.process = process
                self._watcher = asyncio.create_task(self._watch(process))
                self._watchdog = asyncio.create_task(self.watchdog.run())
                if self.config.spec.application.mode == "api":
                    await self._wait_for_app_ports(process)
            if process.status == "running":
                self.state.phase = "running"
            self.state.step = None

    async def _wait_for_app_ports(self, process: AppProcess) -> None:
        """API mode: the app counts as running once each endpoint's port accepts connections (the room's
        loopback: the launcher runs in the room's netns), so clients never meet a proxy with no app."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ready_timeout
        for endpoint in self.config.spec.endpoints:
            while True:
                if process.status != "running":
                    raise ProcessError(f"the app exited (code {process.exit_code}) before it served port "
                                       f"{endpoint.port}")
                try:
                    _reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
                    writer.close()
                    break
                except OSError:
                    if loop.time() > deadline:
                        raise ProcessError(f"the app did not serve port {endpoint.port} within "
                                           f"{self.config.ready_timeout:g} s") from None
                    await asyncio.sleep(0.05)

    async def _watch(self, process: AppProcess) -> None:
        code = await process.wait()
        await self._release_guard()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.state.phase = process.status
        log.info("app %s (exit code %s)", process.status, code)
        with contextlib.suppress(CcrError):
            await asyncio.to_thread(self._audit, {"step": "exit", "app": self.config.spec.application.name,
                                                     "status": process.status, "exit_code": code})
        if self.config.telemetry_url and self.config.spec.telemetry.log_sink is not None:
            try:
                await self._forward_export("exportLogs")
            except CcrError as exc:  # e.g. the telemetry sidecar was lost: said here, never skipped silently
                log.error("the app's logs were not exported: %s", exc)
        self._done.set()

    async def _start_guard(self) -> None:
        """The guard removes the app container if this process dies (guard.py); its stdin is a pipe only we
        hold open. Its output goes to our log."""
        args = ["--container", self.launch.container_name, "--app", self.config.spec.application.name,
                "--governance-url", self.config.governance_url]
        if self.config.sidecar_token_file:
            args += ["--token-file", str(self.config.sidecar_token_file)]
        self._guard = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sidecars.launcher.guard", *args, stdin=asyncio.subprocess.PIPE,
            start_new_session=True)

    async def _release_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is None or guard.stdin is None:
            return
        with contextlib.suppress(ConnectionError):
            guard.stdin.write(RELEASE)
            await guard.stdin.drain()
        guard.stdin.close()
        await guard.wait()

    async def _sidecar_lost(self, loss: SidecarLoss) -> None:
        """Fail closed first (stop the app if the sidecar guarded it), then audit: an audit that hangs on a
        frozen governance must not keep an unguarded app running."""
        self.state.lost[loss.sidecar] = loss
        log.error("sidecar %s lost (%s); its failure policy: %s", loss.sidecar, loss.error, loss.policy.value)
        process = self.state.process
        if loss.policy is FailurePolicy.STOP_APP and process is not None and process.status == "running":
            self.state.error = f"sidecar {loss.sidecar} lost ({loss.error}): the app was stopped"
            await process.stop(LOST_SIDECAR_STOP_S)
            loss.app_stopped = True
        try:
            await asyncio.to_thread(self._audit, {
                "step": "sidecar-lost", "app": self.config.spec.application.name,
                "container": self.launch.container_name, "sidecar": loss.sidecar,
                "policy": loss.policy.value, "app_stopped": loss.app_stopped, "error": loss.error[:300]})
            loss.audited = True
        except CcrError as exc:
            loss.audited = False
            log.error("the loss of sidecar %s is NOT audited in CGS (%s): recorded only in this log",
                      loss.sidecar, exc)

    async def _forward_line(self, stream: str, line: str) -> None:
        # The app's output may hold the parties' data: it goes only to the telemetry sidecar's encrypted
        # buffer, and leaves the room only through a consented log export. Never to our own log.
        if not self.config.telemetry_url:
            return
        record = {"time": dt.datetime.now(dt.UTC).isoformat(), "stream": stream, "line": line}
        await self._http.post(f"{self.config.telemetry_url.rstrip('/')}/logs/app",
                              params={"app": self.config.spec.application.name},
                              content=json.dumps(record) + "\n", headers={"content-type": "application/x-ndjson"})

    async def _forward_export(self, which: str) -> JSONResponse:
        if not self.config.telemetry_url:
            raise NotFound("no telemetry sidecar is configured")
        try:
            response = await self._http.post(f"{self.config.telemetry_url.rstrip('/')}/gov/{which}", timeout=120)
        except httpx.HTTPError as exc:
            raise RemoteServiceError("telemetry", f"unreachable: {exc}") from None
        return JSONResponse(response.json(), status_code=response.status_code)

    async def stop_app(self, reason: str) -> None:
        process = self.state.process
        if process is None or process.status != "running":
            return
        log.warning("stopping the app: %s", reason)
        with contextlib.suppress(CcrError):
            await asyncio.to_thread(self._audit, {"step": "stop", "app": self.config.spec.application.name,
                                                     "reason": reason})
        await process.stop()

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.stop_app("the launcher is shutting down")
        await self._release_guard()
        await self._http.aclose()
        self.gov.close()


def build_app(launcher: Launcher) -> FastAPI:
    app = create_app("ccr launcher", error_body=azure_error_body, max_body_bytes=MAX_BODY_BYTES)
    app_name = launcher.config.spec.application.name

    def _check_name(name: str) -> None:
        if name != app_name:
            raise NotFound(f"no application named {name!r} in this room (it runs {app_name!r})")

    @app.get("/status")
    async def status() -> JSONResponse:
        body = launcher.state.as_json()
        return JSONResponse(body, status_code=503 if body["status"] == "failed" else 200)

    @app.post("/gov/{name}/start")
    async def start(name: str) -> dict:
        _check_name(name)
        await launcher.start_app()
        return {"status": "started"}

    @app.get("/gov/{name}/status")
    async def app_status(name: str) -> dict:
        _check_name(name)
        process = launcher.state.process
        if process is None:
            return {"status": launcher.state.phase if launcher.state.phase == "failed" else "not_started",
                    "exit_code": None}
        return {"status": process.status, "exit_code": process.exit_code}

    @app.post("/gov/exportLogs")
    async def export_logs() -> JSONResponse:
        return await launcher._forward_export("exportLogs")

    @app.post("/gov/exportTelemetry")
    async def export_telemetry() -> JSONResponse:
        return await launcher._forward_export("exportTelemetry")

    @app.post("/consent/revoked")
    async def consent_revoked(request: Request) -> dict:
        notice = await request.body()
        await launcher.stop_app(f"execution consent revoked: {notice.decode(errors='replace')[:300]}")
        return {"status": "stopping"}

    return app
