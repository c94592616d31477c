"""`ccr up`, `ccr down`, `ccr status`, `ccr logs NAME`: a clean room on this machine, no Docker."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cliargs import command_group
from ..room.registry import REGISTRY


def log_names() -> tuple[str, ...]:
    """Every sidecar's log, and the loopback forwarders'. The app's own output is not here: it leaves the
    room only through a consented, encrypted log export (`ccr export logs`, then the log sink's owner runs
    `ccr logs download`)."""
    return (*REGISTRY.names, "forward")


def _run_dir(args: argparse.Namespace) -> Path:
    from .up import default_run_dir

    return Path(args.run_dir) if args.run_dir else default_run_dir(args.name)


def _cmd_up(args: argparse.Namespace) -> int:
    import yaml

    from ..cliargs import spec_variables
    from ..common.errors import ConfigError
    from .up import UpOptions, default_run_dir, up

    if not args.endpoints:
        raise ConfigError("--endpoints FILE is needed: start the stand-ins first (ccr emulators start "
                          "--run-dir DIR writes DIR/endpoints.json)")
    spec_path = Path(args.spec)
    if not spec_path.is_file():
        raise ConfigError(f"{spec_path}: no such spec file")
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        try:
            name = str((yaml.safe_load(spec_path.read_text()) or {}).get("name", "room"))
        except (yaml.YAMLError, AttributeError):
            name = "room"
        run_dir = default_run_dir(name)
    variables = spec_variables(argparse.Namespace(var=args.var))  # checks NAME=VALUE before anything starts
    return up(UpOptions(spec_path=spec_path, endpoints_file=Path(args.endpoints), run_dir=run_dir, variables=variables,
                        firewall_backend=args.firewall_backend, ready_timeout=args.timeout,
                        wait_for_job=args.wait))


def _cmd_down(args: argparse.Namespace) -> int:
    from .up import down

    return down(_run_dir(args))


def _cmd_status(args: argparse.Namespace) -> int:
    from .up import status

    report = status(_run_dir(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"room {report['room']} (netns {report['netns']})")
    for name, answer in report["sidecars"].items():
        if answer is None:
            print(f"  {name:<11} not answering")
            continue
        body = answer["status"]
        summary = body.get("status") if isinstance(body, dict) else body
        print(f"  {name:<11} HTTP {answer['http']}  {summary}")
        if name == "launcher" and isinstance(body, dict) and body.get("app"):
            app = body["app"]
            print(f"  {'app':<11} {app['status']} (exit code {app['exit_code']})")
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from ..common.errors import ConfigError

    name = args.logs_command
    log = _run_dir(args) / "logs" / f"{name}.log"
    if not log.exists():
        raise ConfigError(f"no log of {name} in {log.parent} (is the room running from there? --run-dir DIR)")
    print(log.read_text(errors="replace"), end="")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """POST the launcher's /gov/exportLogs or /gov/exportTelemetry (the reference's operator calls)."""
    from ..common.errors import CcrError
    from .roomhttp import room_request
    from .steps import RoomState
    from .up import STATE_FILE

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


def _room_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="the room's run directory (default run/NAME)")
    parser.add_argument("--name", default="room", help="the room's name, when --run-dir is not given")


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="run a clean room on this machine (root; no Docker)",
                        description="Starts the room of SPEC: a network namespace with the firewall's rules in "
                                    "force, every sidecar as a process inside it, then the launcher, which runs "
                                    "the app with podman after the consent, firewall and container policy "
                                    "checks. One line per step; any failure names the step and tears down.")
    up.add_argument("spec", metavar="SPEC")
    up.add_argument("--endpoints", metavar="FILE", help="endpoints.json of the stand-ins (ccr emulators start)")
    up.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="a value for ${NAME} in the spec (repeatable; the sidecars get the same values)")
    up.add_argument("--run-dir", help="where state, logs and mounts go (default run/NAME)")
    up.add_argument("--firewall-backend", choices=("nftables", "iptables"), default="nftables")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds each sidecar may take to be ready")
    up.add_argument("--wait", action="store_true", help="for a job: wait until it exits; exit with its status")
    up.set_defaults(func=_cmd_up)

    down = sub.add_parser("down", help="stop a room and remove everything it set up")
    _room_options(down)
    down.set_defaults(func=_cmd_down)

    status = sub.add_parser("status", help="each sidecar's status and the app's")
    _room_options(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)

    logs = command_group(sub, "logs", "a running room's logs, or a room's exported app logs")
    for name in log_names():
        parser = logs.add_parser(name, help=f"the {name} sidecar's log")
        _room_options(parser)
        parser.set_defaults(func=_cmd_logs)

    export = sub.add_parser("export", help="export the room's logs or telemetry now (only with the parties' "
                                           "consent; encrypted to the spec's sink)")
    export.add_argument("what", choices=("logs", "telemetry"))
    _room_options(export)
    export.set_defaults(func=_cmd_export)
