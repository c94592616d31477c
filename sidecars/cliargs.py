"""Command-line options shared by the `ccr` commands and the sidecars' own command lines: a spec's
variables (`--endpoints FILE`, `--var NAME=VALUE`) and command groups several packages add to."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .common.errors import CcrError, SpecError
from .spec import CleanRoomSpec, endpoint_variables, load_spec

T = TypeVar("T")


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


def add_listen_options(parser: argparse.ArgumentParser, port: int) -> None:
    """Where a sidecar run standalone listens: `--host` (loopback), `--port` (its registry port; 0 picks a
    free one) and `--ready-file` (written once it listens: {"port", "url"})."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s; keep it on "
                                                            "loopback)")
    parser.add_argument("--port", type=int, default=port, help="default %(default)s; 0 picks a free one")
    parser.add_argument("--ready-file", type=Path, metavar="FILE",
                        help='written once listening: {"port": N, "url": "http://HOST:N"}')


def run_standalone(name: str, parser: argparse.ArgumentParser, config_from_args: Callable[[argparse.Namespace], T],
                   run: Callable[[T], int], argv: Sequence[str] | None) -> int:
    """`ccr sidecar run NAME OPTIONS`: the sidecar configured by its own options; a user's mistake is one line."""
    args = parser.parse_args(argv)
    try:
        return run(config_from_args(args))
    except CcrError as exc:
        print(f"ccr sidecar run {name}: error: {exc}", file=sys.stderr)
    except OSError as exc:  # e.g. its port is taken
        print(f"ccr sidecar run {name}: error: {exc.strerror or exc}", file=sys.stderr)
    return 1
