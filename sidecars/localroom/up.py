"""`ccr room up` / `ccr room down` / `ccr room status`: a container group emulated with processes and a netns.

Startup order and failure semantics are ARCHITECTURE §6, as the registry's waves and each sidecar's needs
say: the firewall's rules are in force (applied and verified) before anything else runs in the room; then
skr, governance, identity and telemetry; then governance attests to CGS and execution consent is confirmed,
before any key is released; then the volumes (keys released, mounts up) and the proxy; last the launcher,
which checks consent, the firewall and the container policy before it starts the app with podman. Any step
failing names the step and the reason and tears everything down again; so does Ctrl-C. `ccr room down`
undoes a running room from its state file.

Every Python process of the room is forked from one fork server (`sidecars.common.forkserver`) started
first: it imports the sidecars' modules once while the network and the firewall are set up, instead of
each process importing them again (about half a second of CPU each). It only imports and forks; a sidecar
forked from it joins the room's netns before any of its own code runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..common.errors import ConfigError, ProcessError
from ..common.forkserver import ENV_VAR as FORK_SERVER_ENV
from ..common.forkserver import ForkServerClient
from ..common.process import ManagedProcess, ProcessRecord, file_exists, stop_recorded, wait_until
from ..common.room import Emulation, Placement
from ..common.sidecar import Need, Sidecar
from ..launcher.podman import Podman
from ..launcher.sidecar import app_container_name
from ..renderings.render import render
from ..room.group import canonical_spec_json, render_group
from ..room.registry import REGISTRY
from ..spec import endpoint_variables, load_spec
from .netns import create_room_network, delete_room_network, netns_exists, stop_processes_in
from .plan import RoomPlan, SidecarProcess
from .roomhttp import room_request, room_status
from .steps import STATE_FILE, RoomState, StepFailed, StepRunner

#: The app runner's phases in which a job is over.
JOB_OVER = ("exited", "failed", "stopped")
#: What every room's Python processes import, in the order startup needs it, besides each sidecar's own
#: modules (its `run` module and `preload`, from the registry). The fork server imports these once, between
#: requests, so no sidecar or mount process pays for them again. (Not the modules run as `__main__`
#: themselves, e.g. `sidecars.volumes.mount`: runpy runs those afresh.)
BASE_PRELOAD = (
    "sidecars.cli", *(f"sidecars.{cli.parent.name}.cli"
                      for cli in sorted(Path(__file__).resolve().parents[1].glob("*/cli.py"))),
    "sidecars.spec", "sidecars.common.http", "sidecars.common.otel", "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.metrics", "opentelemetry.sdk._logs.export", "requests",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter", "uvicorn", "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on", "pydantic.v1",
)
FORK_SERVER_DIR = Path("/run/ccr-up")
#: seconds one OTLP export from a sidecar to the telemetry sidecar may take, retries included (a loopback
#: export takes milliseconds)
OTLP_EXPORT_TIMEOUT_S = 2


def preload_modules() -> tuple[str, ...]:
    """The first wave's modules (the firewall's), then the base modules, then each later sidecar's in startup
    order. The firewall is forked as soon as the network is up: with its modules imported first, it is
    forked with them instead of importing them itself while the server imports the rest beside it."""
    first, *later = [[m for s in wave for m in (s.run_module, *s.preload)] for wave in REGISTRY.waves()]
    return tuple(dict.fromkeys((*first, *BASE_PRELOAD, *(m for wave in later for m in wave))))


def default_run_dir(name: str) -> Path:
    return Path("run") / name


def netns_name(room: str, run_dir: Path) -> str:
    """`ccr-` + the room's name cut to fit 15 characters, + a short hash of the whole name and the room's
    (resolved) run directory: rooms whose names share a prefix (cleanroomhello-job, cleanroomhello-api), and
    two rooms of one spec run from different run directories, never share a netns."""
    digest = hashlib.sha256(f"{room}\0{run_dir.resolve()}".encode()).hexdigest()
    return f"ccr-{room[:5]}-{digest[:5]}"


@dataclass
class UpOptions:
    spec_path: Path
    endpoints_file: Path
    run_dir: Path
    #: values for ${NAME} in the spec besides the endpoints file's (`--var`)
    variables: dict[str, str] = field(default_factory=dict)
    firewall_backend: str = "nftables"
    ready_timeout: float = 60.0
    wait_for_job: bool = False


def _interrupt(_signum, _frame) -> None:
    """SIGTERM during `ccr room up` tears the room down like Ctrl-C does."""
    raise KeyboardInterrupt


def fork_server_socket(run_dir: Path) -> Path:
    """The room's fork server socket: short (a Unix socket path has at most 107 bytes), root-only."""
    return FORK_SERVER_DIR / f"{hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]}.sock"


def _start_fork_server(run_dir: Path, socket_path: Path, timeout: float) -> ManagedProcess:
    """The process every sidecar is forked from (sidecars.common.forkserver). It starts importing at once,
    while the room's network and firewall are set up; it only imports and forks, so it may run before the
    firewall is in force."""
    argv = [sys.executable, "-m", "sidecars.common.forkserver", "--socket", str(socket_path),
            *(arg for module in preload_modules() for arg in ("--preload", module))]
    socket_path.unlink(missing_ok=True)
    return ManagedProcess("forkserver", argv, ready=file_exists(socket_path), ready_timeout=timeout,
                          log_path=run_dir / "logs" / "forkserver.log").start()


def _start_in_room(plan: RoomPlan, sidecar: SidecarProcess, timeout: float, traceparent: str,
                   fork_server: ForkServerClient) -> ManagedProcess:
    """Start one sidecar in the room without waiting: `wait_ready()` waits for its ready file. It is forked
    into the room's netns (the netns alone: a mount namespace of its own would hide the volumes' FUSE
    mounts from the host and the cgroup hierarchy from podman)."""
    name = sidecar.sidecar.name
    ready = plan.placement.ready_file(name)
    ready.unlink(missing_ok=True)
    telemetry = REGISTRY.get("telemetry")
    # The room's own settings come only from its placement, never from the caller's shell.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CCR_")}
    # Not the telemetry sidecar itself: exporting to its own receiver, it would retry its last export for
    # seconds after that receiver stopped, on every `ccr room down`. Nor a sidecar of an earlier wave (the
    # firewall, an init container): it is done before the receiver exists, so its exports could only fail,
    # and retrying them on its way out held the whole room's start for two seconds.
    # Each export (retries included) is bounded: with the telemetry sidecar dead, every other sidecar's last
    # export on `ccr room down` would otherwise retry for ten seconds, one sidecar after the other.
    exports = sidecar.sidecar is not telemetry and sidecar.sidecar.wave >= telemetry.wave
    otlp = {} if not exports else {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{telemetry.port('http')}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TIMEOUT": str(OTLP_EXPORT_TIMEOUT_S)}
    env = {**inherited, **otlp, "OTEL_SERVICE_NAME": f"ccr-{name}",
           "TRACEPARENT": traceparent, FORK_SERVER_ENV: str(fork_server.path), **sidecar.env}
    process = ManagedProcess(name, sidecar.argv, ready_timeout=timeout, env=env, log_path=plan.log_file(name),
                             stop_timeout=10, fork_server=fork_server, netns=f"/run/netns/{plan.placement.netns}",
                             imports=sidecar.sidecar.run_module).start()
    process.ready = file_exists(ready)
    return process


def _wait_ready(plan: RoomPlan, sidecar: Sidecar, process: ManagedProcess, timeout: float,
                accept: Callable[[int, Any], bool] | None = None) -> Any:
    """Poll the sidecar's /status inside the room until it says it is ready (its registry record's
    `ready`, or `accept`); a dead process, a failure it reports or a timeout fails."""
    accept = accept or sidecar.ready
    port = sidecar.port(sidecar.status_port)
    last: list[str] = ["no answer"]
    result: list[Any] = []

    def check() -> bool:
        if not process.running():
            raise ProcessError(f"{sidecar.name} exited: {process.output_tail(8)}")
        response = room_status(plan.placement.netns, port)
        if response is None:
            return False
        body = response.json() if response.body[:1] in (b"{", b"[") else response.body.decode(errors="replace")
        last[0] = f"HTTP {response.status}: {json.dumps(body)[:400]}"
        if accept(response.status, body):
            result.append(body)
            return True
        return False

    try:
        wait_until(check, timeout, f"{sidecar.name} /status")
    except ProcessError as exc:
        if "not ready" in str(exc):
            raise ProcessError(f"{sidecar.name} not ready after {timeout:g} s ({last[0]})") from None
        raise
    return result[0]


def _wait_done(plan: RoomPlan, sidecar: Sidecar, process: ManagedProcess, timeout: float) -> None:
    """An init container (the firewall): the room goes on once it exited 0 having written its ready file,
    as Confidential ACI starts the other containers only after the init containers succeeded."""
    wait_until(lambda: not process.running(), timeout, f"{sidecar.name} (an init container) to finish")
    code = process.popen.poll() if process.popen is not None else None
    if code != 0 or not plan.placement.ready_file(sidecar.name).exists():
        raise ProcessError(f"{sidecar.name} (an init container) exited with code {code}: {process.output_tail(8)}")


def _confirm_consent(plan: RoomPlan) -> None:
    """ARCHITECTURE §6 step 2, before any key is released: governance attests to CGS and execution consent is
    confirmed (the attestation is then done once for every sidecar that needs it)."""
    governance = REGISTRY.get("governance")
    response = room_request(plan.placement.netns, governance.port(), "POST", "/consentcheck/execution", timeout=30)
    body = response.json() if response.body[:1] == b"{" else {}
    if response.status != 200:
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        raise ProcessError(f"governance answered {response.status}: "
                           f"{error.get('message') or response.body[:300].decode(errors='replace')}")
    if body.get("status") != "enabled":
        reason = body.get("reason") or {}
        raise ProcessError(f"execution consent is {body.get('status')}: {reason.get('message') or reason}")


def _job_over(status: int, body: Any) -> bool:
    return isinstance(body, dict) and body.get("status") in JOB_OVER


def up(options: UpOptions, out: Callable[[str], None] = print) -> int:
    runner = StepRunner(out=out)
    run_dir = options.run_dir.resolve()
    state = RoomState.load(run_dir / STATE_FILE)
    if state.data.get("netns") and netns_exists(state.data["netns"]):
        raise ConfigError(f"a room is already running from {run_dir} (ccr room down --run-dir {options.run_dir})")
    for sub in ("logs", "ready", "mnt"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    for old_log in (run_dir / "logs").glob("*.log"):  # a new room: `ccr room logs` shows only this one's lines
        old_log.unlink()
    state.data = {}
    started = time.monotonic()
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with runner.step("fork server"):
            socket_path = fork_server_socket(run_dir)
            fork_server = _start_fork_server(run_dir, socket_path, options.ready_timeout)
            _record(state, runner, fork_server)
            state.data["fork_server"] = str(socket_path)
            client = ForkServerClient(socket_path)
            runner.on_teardown("fork server connection", client.close)
        with runner.step("load spec and endpoints"):
            endpoints_file = options.endpoints_file.resolve()
            endpoints = endpoint_variables(endpoints_file)
            spec = load_spec(options.spec_path, variables={**endpoints, **options.variables})
            group = render_group(spec)
            # For the record: what every sidecar receives as CCR_SPEC, and HOST_DATA measures.
            (run_dir / "spec.json").write_text(canonical_spec_json(spec))
        # HOST_DATA (the policy hash the mock platform reports) is first needed by skr: rendering it (podman
        # inspects the images) goes on while the network and the firewall are set up.
        host_data = _render_host_data_in_background(spec)
        plan = RoomPlan(spec=spec, group=group, placement=Placement(
            run_dir=run_dir, mount_root=run_dir / "mnt", netns=netns_name(spec.name, run_dir),
            firewall_backend=options.firewall_backend, emulation=Emulation(endpoints_file, endpoints)))
        netns = plan.placement.netns
        state.data.update({"name": spec.name, "spec": str(run_dir / "spec.json"), "run_dir": str(run_dir),
                           "mount_root": str(plan.placement.mount_root),
                           "container": app_container_name(spec, plan.placement.netns),
                           "app": spec.application.name})
        state.save()
        with runner.step(f"network namespace {netns}"):
            # A fresh sidecar token for this room; the first sidecar to start creates it.
            plan.placement.sidecar_token_file.unlink(missing_ok=True)
            net = create_room_network(netns)
            plan = replace(plan, placement=replace(plan.placement, room_address=net.room_v4))
            runner.on_teardown("network namespace", lambda: delete_room_network(netns))
            # Recorded once it is ours: a room of the same name running elsewhere is never torn down.
            state.data.update(netns=netns, host_v4=net.host_v4, room_v4=net.room_v4, room_v6=net.room_v6)
            forward_ready = plan.placement.ready_file("forward")
            forward_ready.unlink(missing_ok=True)
            ports = [arg for port in plan.forwarded_ports() for arg in ("--port", str(port))]
            # The forwarders stay in the host's netns (they bridge into the room); the stand-ins are needed
            # by the sidecars that go outside, so the firewall does not wait for them.
            forwarder = ManagedProcess("forward", [plan.python, "-m", "sidecars.localroom.forward", "--netns",
                                                   netns, *ports, "--ready-file", str(forward_ready)],
                                       ready_timeout=15, log_path=plan.log_file("forward"), fork_server=client).start()
            forwarder.ready = file_exists(forward_ready)
            _record(state, runner, forwarder)
        timeout = options.ready_timeout
        # One W3C trace for the room's startup: every sidecar's steps become spans of it.
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        state.data["startup_trace_id"] = trace_id

        def start(sidecar: Sidecar) -> ManagedProcess:
            process = _start_in_room(plan, plan.process(sidecar), timeout, traceparent, client)
            _record(state, runner, process)
            return process

        waves = plan.waves()
        processes: dict[str, ManagedProcess] = {}
        met: set[Need] = set()
        for index, wave in enumerate(waves):
            early = tuple(s for s in (waves[index + 1] if index + 1 < len(waves) else ()) if s.start_early)
            needs = set().union(*(s.needs for s in wave + early)) - met
            if Need.HOST_DATA in needs:
                with runner.step("render policy (HOST_DATA)"):
                    emulation = replace(plan.placement.emulation, host_data=host_data.result())
                    plan = replace(plan, placement=replace(plan.placement, emulation=emulation))
                    state.data["host_data"] = emulation.host_data
            if Need.CONSENT in needs:
                with runner.step("execution consent (governance attested to CGS)"):
                    _confirm_consent(plan)
            with runner.step(f"sidecar{'s' if len(wave) > 1 else ''} {', '.join(s.name for s in wave)}"):
                if Need.OUTSIDE in needs:
                    forwarder.wait_ready()
                met |= needs
                for sidecar in wave:
                    if sidecar.name not in processes:
                        processes[sidecar.name] = start(sidecar)
                for sidecar in early:
                    processes[sidecar.name] = start(sidecar)
                for sidecar in wave:
                    if sidecar.init_container:
                        _wait_done(plan, sidecar, processes[sidecar.name], timeout)
                        continue
                    processes[sidecar.name].wait_ready()
                    if sidecar.own_step is None:
                        _wait_ready(plan, sidecar, processes[sidecar.name], timeout)
        body: Any = None
        for sidecar in (s for wave in waves for s in wave if s.own_step):
            with runner.step(sidecar.own_step):
                body = _wait_ready(plan, sidecar, processes[sidecar.name], timeout)
        app_runner = next(s for s in REGISTRY if s.runs_containers)
        if body is None:
            body = _wait_ready(plan, app_runner, processes[app_runner.name], timeout)
        out(f"room {spec.name} is up in {time.monotonic() - started:.1f} s: app {body.get('status')}")
        if options.wait_for_job and spec.application.mode == "job" and body.get("status") == "running":
            with runner.step("wait for the job to exit"):  # a failure here tears the room down too
                body = _wait_ready(plan, app_runner, processes[app_runner.name], 24 * 3600, accept=_job_over)
            out(f"job {body['status']} with exit code {(body.get('app') or {}).get('exit_code')}")
        out(f"logs: {run_dir / 'logs'}  mounts: {plan.placement.mount_root}  state: {state.path}  "
            f"startup trace: {trace_id}")
        out(f"audit trail: ccr governance events list {spec.contract.id} --endpoints {options.endpoints_file} "
            f"--identity MEMBER_DIR; stop with: "
            f"ccr room down --run-dir {options.run_dir}")
        app = body.get("app") or {}
        return 0 if body.get("status") != "failed" and app.get("exit_code") in (None, 0) else 1
    except (StepFailed, KeyboardInterrupt) as exc:
        out("interrupted: tearing down" if isinstance(exc, KeyboardInterrupt) else "tearing down")
        _teardown(state, runner)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def _render_host_data_in_background(spec) -> Future[str]:
    rendering = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
    future = rendering.submit(lambda: render(spec).host_data)
    rendering.shutdown(wait=False)
    return future


def _record(state: RoomState, runner: StepRunner, process: ManagedProcess) -> None:
    try:
        record = process.record()
    except ProcessError:
        if process.popen is None or process.popen.poll() is None:
            raise
        return  # already over (an init container that finished at once): nothing to stop or show as running
    state.add("processes", json.loads(record.to_json()))
    runner.on_teardown(process.name, lambda: stop_recorded(record, timeout=10))


def _teardown(state: RoomState, runner: StepRunner) -> None:
    runner.teardown()
    _cleanup_leftovers(state)


def _cleanup_leftovers(state: RoomState, note: Callable[[str], None] = lambda _line: None) -> list[str]:
    """What a crashed sidecar may have left: the app container, its orphaned processes (stopped first: a mount
    process told to stop flushes and unmounts), FUSE mounts, the netns."""
    done = []
    container = state.data.get("container")
    netns = state.data.get("netns")
    if container and netns:  # only a room whose netns was created can have run its app
        try:
            Podman().remove_container(container)
        except ProcessError as exc:
            done.append(f"container {container}: {exc}")
    if netns and netns_exists(netns):
        leftovers = stop_processes_in(netns)
        if leftovers:
            note(f"stopped {len(leftovers)} process(es) no sidecar was left to stop: "
                 f"{', '.join(map(str, leftovers))}")
    mount_root = state.data.get("mount_root")
    if mount_root:
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(f"{mount_root}/"):
                subprocess.run(["umount", "--lazy", target], check=False)
    if netns and netns_exists(netns):
        delete_room_network(netns)
    if state.data.get("fork_server"):
        Path(state.data["fork_server"]).unlink(missing_ok=True)
    return done


def down(run_dir: Path, out: Callable[[str], None] = print) -> int:
    state = RoomState.load(run_dir.resolve() / STATE_FILE)
    if not state.data:
        raise ConfigError(f"no room in {run_dir} (nothing to stop)")
    for item in reversed(state.data.get("processes", [])):
        record = ProcessRecord(**item)
        if stop_recorded(record, timeout=15):
            out(f"stopped {record.name} (pid {record.pid})")
    problems = _cleanup_leftovers(state, out)
    for problem in problems:
        out(f"ccr room down: {problem}")
    state.path.unlink(missing_ok=True)
    out(f"room {state.data.get('name')} is down")
    return 1 if problems else 0
