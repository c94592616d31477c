"""Command-line options shared by the `ccr` commands and the sidecars' own command lines: a spec's
variables (`--endpoints FILE`, `--var NAME=VALUE`), and how a `ccr` command is registered.

How commands are registered, and why: every `ccr NOUN VERB` is declared by `add_command` with its handler
named as a string, "module:function", which `run_handler` imports only when that command runs. Building
the parser (all `ccr --help` does) therefore imports the `cli.py` modules and nothing they dispatch to,
and the handler modules (`sidecars/<package>/commands.py`) import what they use at the top, like any
other module. Before this, each handler imported its dependencies inside its body to keep `ccr --help`
fast; `ccr --help` took 442 ms then (median of 10 runs, python3.11, the 2-core dev box) and takes
N ms now. What remains of it is Python's start and importing the packages whose `__init__` is not
light (sidecars.spec's pydantic models, sidecars.firewall, sidecars.attestation).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from .common.errors import ConfigError, SpecError
from .spec import CleanRoomSpec, endpoint_variables, load_spec


def add_spec_variable_options(parser: argparse.ArgumentParser) -> None:
    """`--endpoints FILE` and `--var NAME=VALUE`: values for `${name}` in a spec."""
    parser.add_argument("--endpoints", metavar="FILE",
                        help="endpoints.json whose values fill ${name} variables (ccr emulators start writes one)")
    add_var_option(parser)


def add_var_option(parser: argparse.ArgumentParser, help: str = "a value for ${NAME} in the spec (repeatable)") -> None:
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help=help)


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


def read_endpoints(args: argparse.Namespace) -> dict:
    """The endpoints.json of `--endpoints FILE` as it is (not only its strings), or {} without the option."""
    if not getattr(args, "endpoints", None):
        return {}
    try:
        return json.loads(Path(args.endpoints).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--endpoints {args.endpoints}: {exc}") from None


# -- registering commands ---------------------------------------------------------------------------
Subcommands = argparse._SubParsersAction

# The nouns that several packages add verbs to. Their text is kept here so that it does not depend on
# which package happens to register first.
SHARED_NOUNS: dict[str, tuple[str, str]] = {
    "spec": ("check a clean room spec and render what deploys it",
             "A spec (YAML) says what a clean room runs and what its parties agreed to. These commands check "
             "it, explain it, import it from Azure's format, and render from it, deterministically, what "
             "deploys it: the CCE policy and its hash, an ARM template, a pod spec, a compose file."),
    "logs": ("a party's view of the app's exported logs: export, download, show",
             "The app's logs (its stdout and stderr) leave a room only as an encrypted export to the spec's "
             "log sink, with the parties' consent. `export` asks a running local room for one; the sink's "
             "owner then downloads, verifies and decrypts them, and shows them. A local room's sidecar logs: "
             "`ccr room logs NAME`."),
    "telemetry": ("a party's view of a room's exported telemetry: export, download, show",
                  "Traces, metrics and sidecar logs leave a room only as an encrypted export to the spec's "
                  "telemetry sink, with the parties' consent. `export` asks a running local room for one; the "
                  "sink's owner then downloads, verifies and decrypts them, and shows them."),
}


def noun(sub: Subcommands, name: str, help: str | None = None, description: str | None = None,
         **kwargs) -> Subcommands:
    """The verbs of `ccr NAME` (created on first use, so that two packages can add verbs to one noun, e.g.
    `ccr logs download` and `ccr logs export`). `help` is the noun's line in `ccr --help`; `description`,
    shown by `ccr NAME --help`, says what the noun is; a shared noun's come from SHARED_NOUNS."""
    groups = sub.__dict__.setdefault("_ccr_groups", {})
    if name not in groups:
        if help is None and description is None:
            help, description = SHARED_NOUNS.get(name, (None, None))
        if not help or not description:
            raise ValueError(f"noun {name!r} needs a help line and a description")
        parser = sub.add_parser(name, help=help, description=description, **kwargs)
        groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    return groups[name]


def add_command(sub: Subcommands, name: str, handler: str, help: str, description: str | None = None,
                **kwargs) -> argparse.ArgumentParser:
    """`ccr ... NAME`: `help` is its one line in the group's listing, `description` its `--help` text
    (default: the help line), `handler` the "module:function" that runs it, imported only then."""
    if ":" not in handler:
        raise ValueError(f"handler {handler!r}: expected 'module:function'")
    parser = sub.add_parser(name, help=help, description=description or help, **kwargs)
    parser.set_defaults(handler=handler)
    return parser


def run_handler(args: argparse.Namespace) -> int:
    """Import the handler `add_command` named and run it; it returns the exit code."""
    module, _, function = args.handler.partition(":")
    return int(getattr(importlib.import_module(module), function)(args) or 0)
