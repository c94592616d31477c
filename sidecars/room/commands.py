"""The handlers of `ccr spec validate` and `ccr sidecar run|list`: what the registry knows, on the command line."""

from __future__ import annotations

import argparse
import importlib
import os

from ..cliargs import load_spec_from_args
from ..common.errors import SpecError
from ..common.otel import attach_parent_from_env
from ..common.room import SPEC_ENV
from .registry import REGISTRY
from .runner import run_in_room


def cmd_spec_validate(args: argparse.Namespace) -> int:
    """The spec's own rules, then what a room of it would refuse at start (`Registry.room_problems`)."""
    try:
        spec = load_spec_from_args(args)
        problems = REGISTRY.room_problems(spec)
        if problems:
            raise SpecError(problems, args.spec)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}")
        return 1
    print("OK")
    return 0


def cmd_sidecar_run(args: argparse.Namespace) -> int:
    # A room's startup is one trace: each sidecar continues the trace `ccr room up` (or a parent) started.
    attach_parent_from_env()
    sidecar = REGISTRY.get(args.name)
    if not args.args and os.environ.get(SPEC_ENV):
        # In the room (a container of the group, or a process of `ccr room up`): configured by the room.
        return run_in_room(sidecar.name)
    # Standalone: the sidecar's own options.
    return int(importlib.import_module(sidecar.run_module).main(args.args) or 0)


def cmd_sidecar_list(_args: argparse.Namespace) -> int:
    print(f"{'NAME':<11} {'WAVE':<5} {'IMAGE':<12} {'PRIVILEGES':<11} PORTS")
    for sidecar in REGISTRY:
        ports = ", ".join(f"{p.number} {p.name}" for p in sidecar.ports)
        privileges = "privileged" if sidecar.privileged else ", ".join(sidecar.capabilities) or "-"
        print(f"{sidecar.name:<11} {sidecar.wave:<5} {sidecar.image:<12} {privileges:<11} {ports}")
        print(f"{'':<11} {sidecar.summary}")
    return 0
