"""Start and stop the local stand-ins as detached processes, and describe them in `endpoints.json`.

`start(run_dir)` creates (or reuses) in `run_dir`: a local CA (`ca/ca.pem`, the `ca_bundle`), a TLS
certificate per stand-in, the mock SEV-SNP platform (`mock-platform/`) and the dev token issuer
(`dev-tokens/`); then starts each stand-in of `REGISTRY` in order, waits for its ready file, records its
PID (`processes.json`) and finally writes `endpoints.json`. `stop(run_dir)` stops exactly the recorded
processes (a PID is only signalled while its start time still matches).

Each stand-in is one `StandIn` entry in `REGISTRY`: its endpoint key, how to run it, and (optionally)
how its URL is derived from its ready file and what to prepare before it starts. Entries run in order, and each
sees the endpoints of those before it (`RunContext.endpoints`), e.g. Key Vault trusting Entra's tokens.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..attestation import MockPlatform
from ..common.devtokens import DevTokenIssuer
from ..common.errors import ConfigError
from ..common.http import TlsFiles
from ..common.process import ManagedProcess, ProcessRecord, is_running, stop_recorded
from ..common.tls import LocalCA
from .entra import LOCAL_TENANT_ID

PROCESSES_FILE = "processes.json"
ENDPOINTS_FILE = "endpoints.json"
READY_TIMEOUT_S = 60.0
Progress = Callable[[str], None]


@dataclass
class RunContext:
    """What a stand-in's command line may refer to."""

    run_dir: Path
    ca: LocalCA
    mock_platform_dir: Path
    dev_tokens: DevTokenIssuer
    endpoints: dict[str, str] = field(default_factory=dict)


Command = Callable[[RunContext, TlsFiles, Path], list[str]]


def python_stand_in(module: str, extra: Callable[[RunContext], list[str]] = lambda ctx: []) -> Command:
    """The command of a stand-in following the agreed options (--port 0 --cert --key --ready-file)."""

    def command(ctx: RunContext, tls: TlsFiles, ready_file: Path) -> list[str]:
        return [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", "--cert", tls.cert_file,
                "--key", tls.key_file, "--ready-file", str(ready_file), *extra(ctx)]

    return command


@dataclass(frozen=True)
class StandIn:
    name: str
    endpoint_key: str
    command: Command
    endpoint: Callable[[dict], str] = lambda ready: ready["url"]
    prepare: Callable[[RunContext], None] = lambda ctx: None


def _create_mock_platform(ctx: RunContext) -> None:
    directory = ctx.mock_platform_dir
    if not (directory.exists() and any(directory.iterdir())):
        MockPlatform.create(directory)
    ctx.endpoints["mock_platform_dir"] = str(directory)


def _maa_options(ctx: RunContext) -> list[str]:
    return ["--trust-mock-platform", str(ctx.mock_platform_dir)]


def _keyvault_options(ctx: RunContext) -> list[str]:
    options = ["--ca-file", str(ctx.ca.cert_file), "--trust-dev-tokens", str(ctx.dev_tokens.jwks_file)]
    if "entra_endpoint" in ctx.endpoints:  # an Entra entry earlier in REGISTRY: its tokens work too
        options += ["--trust-entra", ctx.endpoints["entra_endpoint"]]
        if "entra_tenant_id" in ctx.endpoints:  # SDK clients ask Entra for a token of the challenge's tenant
            authority = f"{ctx.endpoints['entra_endpoint']}/{ctx.endpoints['entra_tenant_id']}"
            options += ["--challenge-authority", authority]
    return options


def _cgs_prepare(ctx: RunContext) -> None:
    # The network operator registers members: `ccr governance member register --endpoints ...`.
    ctx.endpoints["cgs_operator_dir"] = str(ctx.run_dir / "cgs" / "operator")


def _cgs_options(ctx: RunContext) -> list[str]:
    # --ca-bundle: CGS verifies invitees' ID tokens with the keys the Entra stand-in publishes over HTTPS
    return ["--state-dir", str(ctx.run_dir / "cgs"), "--trust-mock-platform", str(ctx.mock_platform_dir),
            "--ca-bundle", str(ctx.ca.cert_file)]


def _entra_prepare(ctx: RunContext) -> None:
    state = ctx.run_dir / "entra"
    ctx.endpoints.update(entra_tenant_id=LOCAL_TENANT_ID, entra_issuer=f"https://sts.windows.net/{LOCAL_TENANT_ID}/",
                         entra_jwks=str(state / "jwks.json"),
                         entra_credentials_file=str(state / "federated-credentials.json"))


def _entra_options(ctx: RunContext) -> list[str]:
    return ["--state-dir", str(ctx.run_dir / "entra"), "--ca-bundle", str(ctx.ca.cert_file)]


REGISTRY: list[StandIn] = [
    StandIn("maa", "maa_endpoint", python_stand_in("sidecars.emulators.maa", _maa_options),
            prepare=_create_mock_platform),
    StandIn("cgs", "cgs_endpoint", python_stand_in("sidecars.emulators.cgs", _cgs_options), prepare=_cgs_prepare),
    StandIn("entra", "entra_endpoint", python_stand_in("sidecars.emulators.entra", _entra_options),
            prepare=_entra_prepare),
    StandIn("keyvault", "keyvault_url", python_stand_in("sidecars.emulators.keyvault", _keyvault_options)),
    StandIn("azurite", "storage_url", python_stand_in(
        "sidecars.emulators.azurite", lambda ctx: ["--log-file", str(ctx.run_dir / "logs" / "azurite-node.log")])),
]


def records(run_dir: Path) -> list[ProcessRecord]:
    path = run_dir / PROCESSES_FILE
    if not path.exists():
        return []
    try:
        return [ProcessRecord(**item) for item in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a process list written by `ccr emulators start`: {exc}") from None


def _write_records(run_dir: Path, records: list[ProcessRecord]) -> None:
    (run_dir / PROCESSES_FILE).write_text(json.dumps([json.loads(r.to_json()) for r in records], indent=2) + "\n")


def running(run_dir: str | Path) -> list[ProcessRecord]:
    """The recorded stand-ins that are still running."""
    return [r for r in records(Path(run_dir)) if is_running(r)]


def start(run_dir: str | Path, *, registry: list[StandIn] | None = None,
          progress: Progress = lambda line: None) -> dict[str, str]:
    """Start the stand-ins; returns the endpoints (also written to run_dir/endpoints.json)."""
    run_dir = Path(run_dir).resolve()
    already = running(run_dir)
    if already:
        names = ", ".join(f"{r.name} (pid {r.pid})" for r in already)
        raise ConfigError(f"emulators are already running in {run_dir}: {names}; "
                          f"run `ccr emulators stop --run-dir {run_dir}` first")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
    ca = LocalCA.create(run_dir / "ca")
    ctx = RunContext(run_dir, ca, run_dir / "mock-platform", DevTokenIssuer.create(run_dir / "dev-tokens"))
    endpoints = ctx.endpoints
    # ca_certificates: the same CA as PEM text, for a spec's trust.ca_certificates (so HOST_DATA measures it)
    endpoints.update(ca_bundle=str(ca.cert_file), ca_certificates=ca.cert_file.read_text(),
                     dev_tokens_dir=str(ctx.dev_tokens.directory))
    started: list[ProcessRecord] = []
    try:
        for stand_in in registry if registry is not None else REGISTRY:
            began = time.monotonic()
            progress(f"starting {stand_in.name} ...")
            stand_in.prepare(ctx)
            tls = ca.issue_server_cert(stand_in.name, directory=run_dir / "tls")
            ready_file = run_dir / f"{stand_in.name}.ready.json"
            ready_file.unlink(missing_ok=True)
            proc = ManagedProcess(stand_in.name, stand_in.command(ctx, tls, ready_file),
                                  ready=lambda path=ready_file: _read_ready(path) is not None,
                                  ready_timeout=READY_TIMEOUT_S,
                                  log_path=run_dir / "logs" / f"{stand_in.name}.log",
                                  cwd=Path(__file__).resolve().parents[2])
            proc.start()
            started.append(proc.record())
            _write_records(run_dir, started)
            endpoints[stand_in.endpoint_key] = stand_in.endpoint(_read_ready(ready_file) or {})
            progress(f"  {stand_in.name} ready at {endpoints[stand_in.endpoint_key]} "
                     f"(pid {proc.pid}, {time.monotonic() - began:.1f} s, log {proc.log_path})")
    except Exception:
        for record in reversed(started):
            stop_recorded(record)
        (run_dir / PROCESSES_FILE).unlink(missing_ok=True)
        raise
    (run_dir / ENDPOINTS_FILE).write_text(json.dumps(endpoints, indent=2, sort_keys=True) + "\n")
    return endpoints


def _read_ready(path: Path) -> dict | None:
    try:
        ready = json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or caught half-written
        return None
    return ready if isinstance(ready, dict) and "url" in ready else None


def stop(run_dir: str | Path, *, progress: Progress = lambda line: None) -> int:
    """Stop the recorded stand-ins; returns how many were still running."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / PROCESSES_FILE).exists():
        raise ConfigError(f"no emulators were started in {run_dir} (no {PROCESSES_FILE})")
    stopped = 0
    for record in reversed(records(run_dir)):
        if stop_recorded(record):
            stopped += 1
            progress(f"stopped {record.name} (pid {record.pid})")
        else:
            progress(f"{record.name} (pid {record.pid}) was not running")
    (run_dir / PROCESSES_FILE).unlink(missing_ok=True)
    (run_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
    return stopped
