"""`ccr room up` / `ccr room down` / `ccr room status`: a container group emulated with processes and a netns.

Startup order and failure semantics are ARCHITECTURE §6: the firewall's rules are in force (applied and
verified) before anything else runs in the room; then skr, governance, identity and telemetry; then
governance attests to CGS and execution consent is confirmed, before any key is released; then the
volumes (keys released, mounts up) and the proxy; last the launcher, which checks consent, the firewall and
the container policy before it starts the app with podman. Any step failing names the step and the reason
and tears everything down again; so does Ctrl-C. `ccr room down` undoes a running room from its state file.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import ConfigError, ProcessError
from ..common.forkserver import ENV_VAR as FORK_SERVER_ENV
from ..common.forkserver import ForkServerClient
from ..common.process import ManagedProcess, ProcessRecord, file_exists, stop_recorded, wait_until
from ..renderings.containers import canonical_spec_json
from ..spec import endpoint_variables, load_spec
from .netns import create_room_network, delete_room_network, netns_exists
from .plan import RoomPlan, SidecarLaunch
from .roomhttp import room_request, room_status
from .steps import RoomState, StepFailed, StepRunner

STATE_FILE = "room.json"
# Startup waves (ARCHITECTURE §6): the firewall's rules are in force before anything else runs; the
# sidecars of one wave start together. Before the volumes' wave governance attests to CGS and confirms
# execution consent (`_confirm_consent`): the volumes release keys and the proxy gets its certificate
# endorsed as they start, so skr, governance and identity answer first; the launcher comes last and checks
# consent, the firewall and the container policy itself.
WAVES = (("firewall",), ("telemetry", "skr", "governance", "identity"), ("volumes", "proxy"), ("launcher",))
#: Started with the wave before their own, to take their start-up off the critical path: the launcher
#: first waits for every sidecar's /status itself, and launches nothing before all of them are ready.
STARTED_EARLY = ("launcher",)
FINAL_PHASES = ("running", "exited", "failed", "stopped", "ready")
#: What the room's Python processes import, in the order startup needs it (the firewall's first). The fork
#: server imports these once, between requests, so no sidecar or mount process pays for them again. (Not
#: the modules run as `__main__` themselves, e.g. `sidecars.volumes.mount`: runpy runs those afresh.)
PRELOAD = (
    "sidecars.cli", *(f"sidecars.{cli.parent.name}.cli"
                      for cli in sorted(Path(__file__).resolve().parents[1].glob("*/cli.py"))),
    "sidecars.spec", "sidecars.common.http", "sidecars.common.otel", "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.metrics", "opentelemetry.sdk._logs.export", "requests",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter", "uvicorn", "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on", "pydantic.v1", "sidecars.firewall.__main__", "sidecars.firewall.nft", "nftables",
    "sidecars.skr.__main__", "sidecars.skr.app", "sidecars.skr.flow", "sidecars.common.devtokens",
    "sidecars.attestation.maa_client", "sidecars.governance.__main__", "sidecars.governance.cgs_client",
    "sidecars.governance.service", "sidecars.identity.__main__", "sidecars.identity.service",
    "sidecars.telemetry.__main__", "sidecars.telemetry.app", "sidecars.telemetry.export", "sidecars.telemetry.sinks",
    "sidecars.telemetry.receiver", "sidecars.volumes.__main__", "sidecars.volumes.fs", "sidecars.common.keyflow",
    "sidecars.common.azure_clients", "sidecars.volumes.owner", "sidecars.proxy.__main__", "sidecars.launcher.__main__",
    "sidecars.launcher.service",
)
FORK_SERVER_DIR = Path("/run/ccr-up")


def default_run_dir(name: str) -> Path:
    return Path("run") / name


def netns_name(room: str) -> str:
    """`ccr-` + the room's name cut to fit the kernel's 15 characters, + a short hash of the whole name, so
    that rooms whose names share a prefix (cleanroomhello-job, cleanroomhello-api) never share a netns."""
    return f"ccr-{room[:6]}-{hashlib.sha256(room.encode()).hexdigest()[:4]}"


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
            *(arg for module in PRELOAD for arg in ("--preload", module))]
    socket_path.unlink(missing_ok=True)
    return ManagedProcess("forkserver", argv, ready=file_exists(socket_path), ready_timeout=timeout,
                          log_path=run_dir / "logs" / "forkserver.log").start()


def _start_in_room(plan: RoomPlan, launch: SidecarLaunch, timeout: float, traceparent: str,
                   fork_server: ForkServerClient) -> ManagedProcess:
    """Start one sidecar in the room without waiting: `wait_ready()` waits for its ready file. It is forked
    into the room's netns (the netns alone: a mount namespace of its own would hide the volumes' FUSE
    mounts from the host and the cgroup hierarchy from podman)."""
    ready = plan.ready_file(launch.name)
    ready.unlink(missing_ok=True)
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": f"ccr-{launch.name}",
           "TRACEPARENT": traceparent, FORK_SERVER_ENV: str(fork_server.path)}
    process = ManagedProcess(launch.name, launch.argv, ready_timeout=timeout, env=env,
                             log_path=plan.log_file(launch.name), stop_timeout=10, fork_server=fork_server,
                             netns=f"/run/netns/{plan.netns}").start()
    process.ready = file_exists(ready)
    return process


def _wait_status(plan: RoomPlan, launch: SidecarLaunch, process: ManagedProcess, timeout: float,
                 accept: Callable[[int, object], bool] = lambda status, body: status == 200) -> object:
    """Poll the sidecar's /status inside the room until `accept`; a dead process or a timeout fails."""
    last: list[str] = ["no answer"]
    result: list[object] = []

    def check() -> bool:
        if not process.running():
            raise ProcessError(f"{launch.name} exited: {process.output_tail(8)}")
        response = room_status(plan.netns, launch.port, launch.status_path)
        if response is None:
            return False
        body = response.json() if response.body[:1] in (b"{", b"[") else response.body.decode(errors="replace")
        last[0] = f"HTTP {response.status}: {json.dumps(body)[:400]}"
        if isinstance(body, dict) and body.get("status") == "failed" and launch.name != "launcher":
            raise ProcessError(_failure_reason(body))
        if accept(response.status, body):
            result.append(body)
            return True
        return False

    try:
        wait_until(check, timeout, f"{launch.name} /status")
    except ProcessError as exc:
        if "not ready" in str(exc):
            raise ProcessError(f"{launch.name} not ready after {timeout:g} s ({last[0]})") from None
        raise
    return result[0]


def _firewall_enforced(status: int, body: object) -> bool:
    """The firewall's /status: its rules, checked again as it answers, are the spec's (nothing else starts
    in the room before)."""
    if isinstance(body, dict) and body.get("status") == "not-in-force":
        raise ProcessError(f"the firewall's rules are not in force: {'; '.join(body.get('differences') or [])}")
    return status == 200 and isinstance(body, dict) and body.get("status") == "enforced"


def _confirm_consent(plan: RoomPlan, governance: SidecarLaunch) -> None:
    """ARCHITECTURE §6 step 2, before any key is released: governance attests to CGS and execution consent is
    confirmed (the attestation is then done once for every sidecar that needs it)."""
    response = room_request(plan.netns, governance.port, "POST", "/consentcheck/execution", timeout=30)
    body = response.json() if response.body[:1] == b"{" else {}
    if response.status != 200:
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        raise ProcessError(f"governance answered {response.status}: "
                           f"{error.get('message') or response.body[:300].decode(errors='replace')}")
    if body.get("status") != "enabled":
        reason = body.get("reason") or {}
        raise ProcessError(f"execution consent is {body.get('status')}: {reason.get('message') or reason}")


def _failure_reason(body: dict) -> str:
    """What a failed sidecar says about itself (volumes: each failed mount with its reason)."""
    reasons = [f"{m.get('name')}: {m.get('reason')}" for m in body.get("mounts", []) if m.get("state") == "failed"]
    return "; ".join(reasons) or str(body.get("error") or body.get("reason") or body)


def up(options: UpOptions, out: Callable[[str], None] = print) -> int:
    runner = StepRunner(out=out)
    run_dir = options.run_dir.resolve()
    state = RoomState.load(run_dir / STATE_FILE)
    if state.data.get("netns") and netns_exists(state.data["netns"]):
        raise ConfigError(f"a room is already running from {run_dir} (ccr room down --run-dir {options.run_dir})")
    for sub in ("logs", "ready", "mnt"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    for old_log in (run_dir / "logs").glob("*.log"):  # a new room: `ccr logs` shows only this one's lines
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
            endpoints = endpoint_variables(options.endpoints_file)
            spec = load_spec(options.spec_path, variables={**endpoints, **options.variables})
            # The sidecars read the spec HOST_DATA measures (each policy's Rego inlined), as in a container.
            resolved_spec = run_dir / "spec.json"
            resolved_spec.write_text(canonical_spec_json(spec))
        # HOST_DATA (the policy hash the mock platform reports) is first needed by skr: rendering it (podman
        # inspects the images) goes on while the network and the firewall are set up.
        from ..renderings.render import render  # (imported here: the fork server starts without waiting for it)

        rendering = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        host_data_future = rendering.submit(lambda: render(spec).host_data)
        rendering.shutdown(wait=False)
        plan = RoomPlan(spec_path=resolved_spec, spec=spec,
                        endpoints_file=options.endpoints_file.resolve(), endpoints=endpoints, run_dir=run_dir,
                        netns=netns_name(spec.name), host_data="", firewall_backend=options.firewall_backend)
        state.data.update({"name": spec.name, "spec": str(plan.spec_path), "run_dir": str(run_dir),
                           "mount_root": str(plan.mount_root),
                           "container": f"ccr-{spec.name}-{spec.application.name}", "app": spec.application.name})
        state.save()
        with runner.step(f"network namespace {plan.netns}"):
            plan.write_secrets()
            net = create_room_network(plan.netns)
            plan.room_address = net.room_v4
            runner.on_teardown("network namespace", lambda: delete_room_network(plan.netns))
            # Recorded once it is ours: a room of the same name running elsewhere is never torn down.
            state.data.update(netns=plan.netns, host_v4=net.host_v4, room_v4=net.room_v4, room_v6=net.room_v6)
            forward_ready = plan.ready_file("forward")
            forward_ready.unlink(missing_ok=True)
            ports = [arg for port in plan.forwarded_ports() for arg in ("--port", str(port))]
            # The forwarders stay in the host's netns (they bridge into the room); the stand-ins are needed
            # from the second wave on, so the firewall does not wait for them.
            forwarder = ManagedProcess("forward", [plan.python, "-m", "sidecars.localroom.forward", "--netns",
                                                   plan.netns, *ports, "--ready-file", str(forward_ready)],
                                       ready_timeout=15, log_path=plan.log_file("forward"), fork_server=client).start()
            forwarder.ready = file_exists(forward_ready)
            _record(state, runner, forwarder)
        launches = plan.sidecars()  # planned again once skr's HOST_DATA is known
        timeout = options.ready_timeout
        # One W3C trace for the room's startup: every sidecar's steps become spans of it.
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        state.data["startup_trace_id"] = trace_id

        def start(name: str) -> ManagedProcess:
            process = _start_in_room(plan, launches[name], timeout, traceparent, client)
            _record(state, runner, process)
            return process

        early: dict[str, ManagedProcess] = {}
        for index, wave in enumerate(WAVES):
            if "skr" in wave:
                with runner.step("render policy (HOST_DATA)"):
                    plan.host_data = state.data["host_data"] = host_data_future.result()
                launches = plan.sidecars()
            if "volumes" in wave:
                with runner.step("execution consent (governance attested to CGS)"):
                    _confirm_consent(plan, launches["governance"])
            with runner.step(f"sidecar{'s' if len(wave) > 1 else ''} {', '.join(wave)}"):
                if "skr" in wave:
                    forwarder.wait_ready()
                processes = {name: early.pop(name, None) or start(name) for name in wave}
                for name in WAVES[index + 1] if index + 1 < len(WAVES) else ():
                    if name in STARTED_EARLY:
                        early[name] = start(name)
                for name, process in processes.items():
                    process.wait_ready()
                    if name == "firewall":
                        _wait_status(plan, launches[name], process, timeout, accept=_firewall_enforced)
                    elif name != "launcher":
                        _wait_status(plan, launches[name], process, timeout)
        process = processes["launcher"]
        with runner.step("launcher: consent, firewall, policy, launch"):
            body = _wait_status(plan, launches["launcher"], process, timeout,
                                accept=lambda status, body: isinstance(body, dict)
                                and body.get("status") in FINAL_PHASES)
            if body.get("status") == "failed":
                raise ProcessError(body.get("error") or "the launcher refused to start the app")
        out(f"room {spec.name} is up in {time.monotonic() - started:.1f} s: app {body.get('status')}")
        if options.wait_for_job and spec.application.mode == "job" and body.get("status") == "running":
            with runner.step("wait for the job to exit"):  # a failure here tears the room down too
                body = _wait_status(plan, launches["launcher"], process, 24 * 3600,
                                    accept=lambda status, body: isinstance(body, dict)
                                    and body.get("status") in ("exited", "failed", "stopped"))
            out(f"job {body['status']} with exit code {(body.get('app') or {}).get('exit_code')}")
        out(f"logs: {run_dir / 'logs'}  mounts: {plan.mount_root}  state: {state.path}  "
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


def _record(state: RoomState, runner: StepRunner, process: ManagedProcess) -> None:
    record = process.record()
    state.add("processes", json.loads(record.to_json()))
    runner.on_teardown(process.name, lambda: stop_recorded(record, timeout=10))


def _teardown(state: RoomState, runner: StepRunner) -> None:
    runner.teardown()
    _cleanup_leftovers(state)


def _cleanup_leftovers(state: RoomState) -> list[str]:
    """What a crashed sidecar may have left: the app container, FUSE mounts, the netns."""
    from ..launcher.podman import Podman

    done = []
    container = state.data.get("container")
    if container and state.data.get("netns"):  # only a room whose netns was created can have run its app
        try:
            Podman().remove_container(container)
        except ProcessError as exc:
            done.append(f"container {container}: {exc}")
    mount_root = state.data.get("mount_root")
    if mount_root:
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(f"{mount_root}/"):
                subprocess.run(["umount", "--lazy", target], check=False)
    netns = state.data.get("netns")
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
    problems = _cleanup_leftovers(state)
    for problem in problems:
        out(f"ccr room down: {problem}")
    state.path.unlink(missing_ok=True)
    out(f"room {state.data.get('name')} is down")
    return 1 if problems else 0


def status(run_dir: Path) -> dict:
    state = RoomState.load(run_dir.resolve() / STATE_FILE)
    if not state.data:
        raise ConfigError(f"no room in {run_dir}")
    from ..renderings.containers import PORTS
    from .plan import FIREWALL_PORT, PROXY_STATUS_PORT, VOLUMES_PORT

    ports = {"firewall": FIREWALL_PORT, "telemetry": PORTS["telemetry-http"], "skr": PORTS["skr"],
             "governance": PORTS["governance"], "identity": PORTS["identity"], "volumes": VOLUMES_PORT,
             "proxy": PROXY_STATUS_PORT, "launcher": PORTS["launcher"]}
    report = {"room": state.data.get("name"), "netns": state.data.get("netns"), "sidecars": {}}
    netns = state.data.get("netns")
    for name, port in ports.items():
        answer = room_status(netns, port) if netns and netns_exists(netns) else None
        report["sidecars"][name] = None if answer is None else {"http": answer.status, "status": answer.json()}
    return report
