"""`ccr emulators start|stop|status --run-dir DIR`: the local stand-ins for Azure (MAA, Key Vault, ...)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "emulators", help="start or stop the local stand-ins for Azure services",
        description="Run local stand-ins for the Azure services a clean room uses (attestation, Key Vault, ...) "
                    "as background processes over HTTPS with a local CA. `start` writes DIR/endpoints.json "
                    "(URLs, CA bundle, mock platform) for specs (--endpoints) and scripts.")
    sub = parser.add_subparsers(dest="emulators_command", metavar="SUBCOMMAND", required=True)
    for name, handler, text in (("start", _start, "start the stand-ins and write DIR/endpoints.json"),
                                ("stop", _stop, "stop the stand-ins started in DIR"),
                                ("status", _status, "show which stand-ins run in DIR")):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--run-dir", required=True, metavar="DIR",
                             help="directory for the CA, certificates, logs, PIDs and endpoints.json")
        command.set_defaults(func=handler)


def _start(args: argparse.Namespace) -> int:
    from .runner import ENDPOINTS_FILE, start

    endpoints = start(args.run_dir, progress=lambda line: print(line, flush=True))
    print(f"endpoints written to {args.run_dir}/{ENDPOINTS_FILE}:")
    for key, value in sorted(endpoints.items()):
        print(f"  {key} = {value}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from .runner import stop

    stop(args.run_dir, progress=lambda line: print(line, flush=True))
    return 0


def _status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .runner import is_running, records

    recorded = records(Path(args.run_dir))
    if not recorded:
        print(f"no emulators recorded in {args.run_dir}")
        return 1
    for record in recorded:
        state = "running" if is_running(record) else "not running"
        print(f"{record.name}: pid {record.pid} {state} (log {record.log_path})")
    return 0
