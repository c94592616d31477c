"""The handlers of `ccr emulators ...` (registered in cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..renderings.compose import release_emulation
from .runner import ENDPOINTS_FILE, is_running, records
from .runner import start as start_emulators
from .runner import stop as stop_emulators


def start(args: argparse.Namespace) -> int:
    endpoints = start_emulators(args.run_dir, progress=lambda line: print(line, flush=True))
    print(f"endpoints written to {args.run_dir}/{ENDPOINTS_FILE}:")
    for key, value in sorted(endpoints.items()):
        print(f"  {key} = {value}")
    return 0


def stop(args: argparse.Namespace) -> int:
    stop_emulators(args.run_dir, progress=lambda line: print(line, flush=True))
    return 0


def status(args: argparse.Namespace) -> int:
    recorded = records(Path(args.run_dir))
    if not recorded:
        print(f"no emulators recorded in {args.run_dir}")
        return 1
    for record in recorded:
        state = "running" if is_running(record) else "not running"
        print(f"{record.name}: pid {record.pid} {state} (log {record.log_path})")
    return 0


def release_compose(args: argparse.Namespace) -> int:
    for target in release_emulation(Path(args.run_dir)):
        print(f"unmounted {target}")
    return 0
