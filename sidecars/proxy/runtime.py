"""Plan how each endpoint's policy is enforced, then run the proxy: authz server, response inspector
(when a policy judges responses) and Envoy, each a ManagedProcess with a readiness check.

Ports given as 0 are picked by the kernel: the servers report theirs in a ready file, Envoy's are
read back from its admin API, so concurrent test runs never collide.
"""

from __future__ import annotations

import ctypes
import json
import signal
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..common.process import ManagedProcess, file_exists, http_ok
from .envoy import envoy_argv, validate_bootstrap, write_bootstrap
from .model import InboundEndpoint, ProxyModel
from .policies import PolicyConfig
from .rbac import compile_rbac, defines_response_rule, needs_request_body
from .reads import input_reads, is_deterministic, request_key_headers


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None]:
    """A preexec function: the child gets `sig` when the process that started it dies, however it dies,
    so no Envoy or authorization server outlives the sidecar that owns it."""
    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG

    return preexec


def plan_endpoint(endpoint: InboundEndpoint, *, use_rbac: bool = True, use_authz_cache: bool = True) -> InboundEndpoint:
    """Choose the enforcement: no policy → refuse all; compilable → RBAC; otherwise ext_authz (+ ext_proc
    when the policy has a response rule). Every policy parses in OPA, whichever path runs it: a rule of the
    spec (`Endpoint.policy_rego`)."""
    source = endpoint.policy_source
    if source is None:
        return replace(endpoint, enforcement="deny", rbac_policy=None, needs_body=False, inspect_response=False)
    inspect = defines_response_rule(source)
    rbac = compile_rbac(source) if use_rbac and not inspect else None
    if rbac is not None:
        return replace(endpoint, enforcement="rbac", rbac_policy=rbac, needs_body=False, inspect_response=False)
    cache_headers = request_key_headers(input_reads(source)) if use_authz_cache and is_deterministic(source) else None
    return replace(endpoint, enforcement="ext_authz", rbac_policy=None, needs_body=needs_request_body(source),
                   authz_cache_headers=cache_headers, inspect_response=inspect)


def plan(model: ProxyModel, *, use_rbac: bool = True, use_authz_cache: bool = True) -> ProxyModel:
    return replace(model, inbound=tuple(plan_endpoint(e, use_rbac=use_rbac, use_authz_cache=use_authz_cache)
                                        for e in model.inbound))


@dataclass(frozen=True)
class ProxyPorts:
    inbound: int | None
    egress_http: int
    egress_tcp: int
    admin: int


def _listener_ports(admin: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/listeners?format=json", timeout=2) as resp:
        data = json.load(resp)
    ports = {}
    for listener in data.get("listener_statuses", []):
        ports[listener["name"]] = listener["local_address"]["socket_address"]["port_value"]
    return ports


class ProxyRuntime:
    """The running proxy. `start()` returns once Envoy reports ready; `stop()` stops everything."""

    def __init__(self, model: ProxyModel, run_dir: str | Path, *, engine: str = "opa", opa_url: str | None = None,
                 authz_workers: int = 2, envoy_concurrency: int = 1, envoy_log_level: str = "warning"):
        self.model = model
        self.run_dir = Path(run_dir)
        self.engine = engine
        self.opa_url = opa_url
        self.authz_workers = authz_workers
        self.envoy_concurrency = envoy_concurrency
        self.envoy_log_level = envoy_log_level
        self.authz: ManagedProcess | None = None
        self.extproc: ManagedProcess | None = None
        self.envoy: ManagedProcess | None = None
        self.ports: ProxyPorts | None = None

    def _policy_config(self) -> Path:
        policy_dir = self.run_dir / "policies"
        policy_dir.mkdir(parents=True, exist_ok=True)
        files = {}
        for endpoint in self.model.inbound:
            if endpoint.policy_source is not None:
                path = policy_dir / f"{endpoint.name}.rego"
                path.write_text(endpoint.policy_source)
                files[endpoint.name] = str(path)
        return PolicyConfig(files, self.engine, self.opa_url).write(self.run_dir / "policies.json")

    def _start_server(self, name: str, module: str, config: Path, port: int,
                      extra: list[str]) -> tuple[ManagedProcess, int]:
        ready = self.run_dir / f"{name}.ready"
        ready.unlink(missing_ok=True)
        proc = ManagedProcess(name, [sys.executable, "-m", module, "--config", str(config), "--port", str(port),
                                     "--ready-file", str(ready), *extra],
                              ready=file_exists(ready), ready_timeout=30, log_path=self.run_dir / f"{name}.log",
                              preexec_fn=die_with_parent())
        proc.start()
        return proc, json.loads(ready.read_text())["port"]

    def start(self) -> ProxyRuntime:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        model = self.model
        try:
            if model.needs_authz or model.needs_extproc:
                config = self._policy_config()
                if model.needs_authz:
                    self.authz, port = self._start_server("authz", "sidecars.proxy.authz", config, model.authz_port,
                                                          ["--workers", str(self.authz_workers)])
                    model = replace(model, authz_port=port)
                if model.needs_extproc:
                    self.extproc, port = self._start_server("extproc", "sidecars.proxy.extproc", config,
                                                            model.extproc_port, [])
                    model = replace(model, extproc_port=port)
            self.model = model
            bootstrap = write_bootstrap(model, self.run_dir / "envoy.json")
            validate_bootstrap(bootstrap)
            admin_file = self.run_dir / "envoy-admin.txt"
            admin_file.unlink(missing_ok=True)
            self.envoy = ManagedProcess(
                "envoy", envoy_argv(bootstrap, admin_address_path=admin_file, concurrency=self.envoy_concurrency,
                                    log_level=self.envoy_log_level),
                ready=lambda: admin_file.exists() and admin_file.read_text().strip() != ""
                and http_ok(f"http://{admin_file.read_text().strip()}/ready")(),
                ready_timeout=30, log_path=self.run_dir / "envoy.log", preexec_fn=die_with_parent())
            self.envoy.start()
            admin = int(admin_file.read_text().strip().rsplit(":", 1)[1])
            ports = _listener_ports(admin)
            self.ports = ProxyPorts(ports.get("inbound"), ports["egress_http"], ports["egress_tcp"], admin)
        except BaseException:
            self.stop()
            raise
        return self

    def status(self) -> dict:
        def state(proc: ManagedProcess | None) -> str:
            if proc is None:
                return "not needed"
            return "running" if proc.running() else "stopped"

        return {
            "envoy": state(self.envoy), "authz": state(self.authz), "extproc": state(self.extproc),
            "ports": None if self.ports is None else self.ports.__dict__,
            "pids": {p.name: p.pid for p in (self.envoy, self.authz, self.extproc) if p is not None and p.running()},
            "endpoints": {e.name: {"app_port": e.app_port, "enforcement": e.enforcement,
                                   "inspect_response": e.inspect_response} for e in self.model.inbound},
        }

    def stop(self) -> None:
        for proc in (self.envoy, self.extproc, self.authz):
            if proc is not None:
                proc.stop()

    def __enter__(self) -> ProxyRuntime:
        return self.start() if self.envoy is None else self

    def __exit__(self, *_exc) -> None:
        self.stop()
