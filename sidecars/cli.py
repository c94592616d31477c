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

from .cliargs import add_spec_variable_options, load_spec_from_args
from .common.errors import CcrError, SpecError


def _cmd_spec_validate(args: argparse.Namespace) -> int:
    try:
        load_spec_from_args(args)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}")
        return 1
    print("OK")
    return 0


def _cmd_sidecar(args: argparse.Namespace) -> int:
    from .common.otel import attach_parent_from_env

    # A room's startup is one trace: each sidecar continues the trace `ccr up` (or a parent) started.
    attach_parent_from_env()
    try:
        module = importlib.import_module(f"sidecars.{args.name}.__main__")
    except ModuleNotFoundError as exc:
        if exc.name in (f"sidecars.{args.name}", f"sidecars.{args.name}.__main__"):
            raise CcrError(f"no sidecar named {args.name!r}; available: {', '.join(available_sidecars())}") from None
        raise
    argv = args.args
    if not argv and os.environ.get("CCR_SPEC"):
        # In the group's container: configured by the environment the deploy model sets.
        from .localroom.container import options_from_environment

        argv = options_from_environment(args.name)
    return int(module.main(argv) or 0)


def available_sidecars() -> list[str]:
    root = Path(sidecars.__file__).parent
    return sorted(info.name for info in pkgutil.iter_modules([str(root)])
                  if info.ispkg and (root / info.name / "__main__.py").exists())


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

    sidecar = sub.add_parser("sidecar", help="run one sidecar in the foreground (as its container does)")
    sidecar.add_argument("name", help="skr, volumes, governance, identity, firewall, proxy, telemetry, launcher")
    sidecar.add_argument("args", nargs=argparse.REMAINDER, help="the sidecar's own options (see NAME --help)")
    sidecar.set_defaults(func=_cmd_sidecar)

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
