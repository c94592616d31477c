"""The `ccr` command line.

Each package that has commands provides `sidecars/<package>/cli.py` with `register(subparsers)`; this
module discovers them, so adding a sidecar's commands never touches this file. Handlers return an exit
code. Any `CcrError` (a user's mistake, a refusal, an unreachable service) ends in one line on stderr
and exit code 1; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

import sidecars

from .cliargs import add_spec_variable_options, command_group, load_spec_from_args
from .common.errors import CcrError, SpecError
from .common.room import SPEC_ENV
from .room.registry import REGISTRY
from .room.runner import run_in_room


def _cmd_spec_validate(args: argparse.Namespace) -> int:
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


def _cmd_sidecar(args: argparse.Namespace) -> int:
    from .common.otel import attach_parent_from_env

    # A room's startup is one trace: each sidecar continues the trace `ccr room up` (or a parent) started.
    attach_parent_from_env()
    sidecar = REGISTRY.get(args.name)
    if not args.args and os.environ.get(SPEC_ENV):
        # In the room (a container of the group, or a process of `ccr room up`): configured by the room.
        return run_in_room(sidecar.name)
    # Standalone: the sidecar's own options.
    return int(importlib.import_module(sidecar.run_module).main(args.args) or 0)


def _cmd_sidecar_list(_args: argparse.Namespace) -> int:
    print(f"{'NAME':<11} {'WAVE':<5} {'IMAGE':<12} {'PRIVILEGES':<11} PORTS")
    for sidecar in REGISTRY:
        ports = ", ".join(f"{p.number} {p.name}" for p in sidecar.ports)
        privileges = "privileged" if sidecar.privileged else ", ".join(sidecar.capabilities) or "-"
        print(f"{sidecar.name:<11} {sidecar.wave:<5} {sidecar.image:<12} {privileges:<11} {ports}")
        print(f"{'':<11} {sidecar.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccr",
        description="Confidential clean room runtime: run a clean room locally (ccr up), render it for "
                    "docker-compose or Confidential ACI, and act as a party (keys, data, governance).",
    )
    parser.add_argument("--version", action="version", version=f"ccr {sidecars.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    spec = sub.add_parser("spec", help="work with clean room specs")
    spec_sub = spec.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", required=True)
    validate = spec_sub.add_parser("validate", help="check a spec: prints OK, or one line per problem")
    validate.add_argument("spec", metavar="FILE")
    add_spec_variable_options(validate)
    validate.set_defaults(func=_cmd_spec_validate)

    sidecar = command_group(sub, "sidecar", "the room's sidecars: list them, run one in the foreground")
    listing = sidecar.add_parser("list", help="every sidecar of a room: ports, startup wave, image, privileges")
    listing.set_defaults(func=_cmd_sidecar_list)
    run = sidecar.add_parser("run", help="run one sidecar in the foreground (as its container does)",
                             description="Without options, in a room (CCR_SPEC set), the sidecar configures "
                                         "itself from the room; with options, it runs standalone.",
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog="sidecars:\n" + "\n".join(f"  {s.name:<11} {s.summary}" for s in REGISTRY))
    run.add_argument("name", choices=REGISTRY.names, metavar="NAME", help="one of: " + ", ".join(REGISTRY.names))
    run.add_argument("args", nargs=argparse.REMAINDER, help="the sidecar's own options (see NAME --help)")
    run.set_defaults(func=_cmd_sidecar)

    root = Path(sidecars.__file__).parent
    for info in sorted(pkgutil.iter_modules([str(root)]), key=lambda i: i.name):
        if info.ispkg and (root / info.name / "cli.py").exists():
            importlib.import_module(f"sidecars.{info.name}.cli").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .common.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging()
    try:
        return int(args.func(args) or 0)
    except CcrError as exc:
        print(f"ccr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ccr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
