"""The handlers of `ccr room ...`, `ccr logs export` and `ccr telemetry export` (registered in cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cliargs import spec_variables
from ..common.errors import CcrError, ConfigError
from ..common.untrusted import UntrustedInputError, load_yaml, read_bounded
from ..room.registry import REGISTRY
from . import up as room
from .roomhttp import room_request
from .status import describe, room_report
from .steps import STATE_FILE, RoomState
from .up import UpOptions, default_run_dir


def _run_dir(args: argparse.Namespace) -> Path:
    return Path(args.run_dir) if args.run_dir else default_run_dir(args.name)


def up(args: argparse.Namespace) -> int:
    if not args.endpoints:
        raise ConfigError("--endpoints FILE is needed: start the stand-ins first (ccr emulators start "
                          "--run-dir DIR writes DIR/endpoints.json)")
    spec_path = Path(args.spec)
    if not spec_path.is_file():
        raise ConfigError(f"{spec_path}: no such spec file")
    try:
        # Bounded like any spec (a hostile one is refused, naming why, when `up` loads it).
        document = load_yaml(read_bounded(spec_path))
    except (UntrustedInputError, OSError):
        document = None
    document = document if isinstance(document, dict) else {}
    name = str(document.get("name", "room"))
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(name)
    variables = spec_variables(argparse.Namespace(var=args.var))  # checks NAME=VALUE before anything starts
    options = UpOptions(spec_path=spec_path, endpoints_file=Path(args.endpoints), run_dir=run_dir,
                        variables=variables, firewall_backend=args.firewall_backend, ready_timeout=args.timeout,
                        wait_for_job=args.wait)
    if "cluster" in document:
        # The room is the driver of a cluster: its executor rooms come up with it (docs/analytics.md).
        # lazy: the cluster's modules and pyspark (0.3 s), which a single room never needs
        from ..cluster import roomup

        return roomup.up(options, name)
    return room.up(options)


def down(args: argparse.Namespace) -> int:
    # lazy: the cluster's modules and pyspark (0.3 s), which a single room never needs
    from ..cluster import roomup

    if roomup.is_cluster_run_dir(_run_dir(args)):
        return roomup.down(_run_dir(args))
    return room.down(_run_dir(args))


def status(args: argparse.Namespace) -> int:
    report = room_report(_run_dir(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"room {report['room']} (netns {report['netns']}) on platform {report.get('platform') or 'unknown'}"
          + ("" if report.get("platform") in (None, "sev-snp") else ": NOT SEV-SNP hardware, no data of value here"))
    for name, sidecar in report["sidecars"].items():
        answer = "not answering" if sidecar["http"] is None else f"HTTP {sidecar['http']}"
        body = sidecar["status"]
        summary = body.get("status") if isinstance(body, dict) else body
        print(f"  {name:<11} {describe(sidecar['process']):<34} {answer}{f'  {summary}' if summary else ''}")
    for name in ("forward", "forkserver"):
        if name in report["processes"]:
            print(f"  {name:<11} {describe(report['processes'][name])}")
    launcher = report["sidecars"].get("launcher", {}).get("status")
    app = launcher.get("app") if isinstance(launcher, dict) else None
    container = report["app_container"]
    if app:
        print(f"  {'app':<11} {app['status']} (exit code {app['exit_code']})")
    else:
        print(f"  {'app':<11} container {container['name']} {'exists' if container['exists'] else 'absent'}")
    if isinstance(launcher, dict):
        if launcher.get("error"):
            print(f"  launcher says: {launcher['error']}")
        for lost, loss in (launcher.get("sidecars_lost") or {}).items():
            audit = {True: "audited in CGS", None: "audit pending"}.get(
                loss.get("audited"), "NOT audited in CGS (see the launcher's log)")
            print(f"  lost: {lost} ({loss['policy']}; app {'stopped' if loss['app_stopped'] else 'kept'}; "
                  f"{audit})")
    return 0


def logs(args: argparse.Namespace) -> int:
    name = args.sidecar
    log = _run_dir(args) / "logs" / f"{name}.log"
    if not log.exists():
        raise ConfigError(f"no log of {name} in {log.parent} (is the room running from there? --run-dir DIR)")
    print(log.read_text(errors="replace"), end="")
    return 0


def export(args: argparse.Namespace) -> int:
    """POST the launcher's /gov/exportLogs or /gov/exportTelemetry (the reference's operator calls)."""
    state = RoomState.load(_run_dir(args).resolve() / STATE_FILE)
    if not state.data:
        raise CcrError(f"no room in {_run_dir(args)}")
    path = "/gov/exportLogs" if args.what == "logs" else "/gov/exportTelemetry"
    try:
        app_runner = next(s for s in REGISTRY if s.runs_containers)
        answer = room_request(state.data["netns"], app_runner.port(), "POST", path, timeout=120)
    except OSError as exc:
        raise CcrError(f"the room's launcher does not answer: {exc}") from None
    body = answer.json()
    if answer.status != 200:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise CcrError(f"export refused ({answer.status}): {error.get('message', body)}")
    print(json.dumps(body, indent=2))
    return 0
