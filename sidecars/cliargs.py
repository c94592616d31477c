"""Command-line options shared by the `ccr` commands and the sidecars' own command lines: a spec's
variables (`--endpoints FILE`, `--var NAME=VALUE`) and command groups several packages add to."""

from __future__ import annotations

import argparse

from .common.errors import SpecError
from .spec import CleanRoomSpec, endpoint_variables, load_spec


def add_spec_variable_options(parser: argparse.ArgumentParser) -> None:
    """`--endpoints FILE` and `--var NAME=VALUE`: values for `${name}` in a spec."""
    parser.add_argument("--endpoints", metavar="FILE",
                        help="endpoints.json whose values fill ${name} variables (ccr emulators start writes one)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for ${NAME} in the spec (repeatable)")


def spec_variables(args: argparse.Namespace) -> dict[str, str]:
    variables: dict[str, str] = {}
    if getattr(args, "endpoints", None):
        variables.update(endpoint_variables(args.endpoints))
    for item in getattr(args, "var", []) or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError([f"--var {item!r}: expected NAME=VALUE"], "command line")
        variables[name] = value
    return variables


def load_spec_from_args(args: argparse.Namespace) -> CleanRoomSpec:
    return load_spec(args.spec, variables=spec_variables(args))


def command_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """The subcommands of group `name` (`ccr NAME SUBCOMMAND`), created on first use, so that two packages
    can add subcommands to one group (e.g. `ccr logs download` and `ccr logs skr`)."""
    groups = sub.__dict__.setdefault("_ccr_groups", {})
    if name not in groups:
        parser = sub.add_parser(name, help=help)
        groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", required=True)
    return groups[name]
