"""Command-line options shared by the `ccr` commands and the sidecars' own command lines: a spec's
variables (`--endpoints FILE`, `--var NAME=VALUE`), and how a `ccr` command is registered.

How commands are registered, and why: `ccr --help` should not import what the commands run. Each command
is declared by `add_command` with its handler named as a string, "module:function", which `run_handler`
imports only when that command runs; so the handler modules (`sidecars/<package>/commands.py`) import what
they use at the top, like any other module, instead of inside each handler as before. And a noun's verbs
are added only when the noun is used (`noun(..., verbs=...)`, `subcommands`): `ccr --help` builds the 13
nouns, `ccr room up` the nouns and room's verbs, not all 66 commands (argparse spends half of each
parser's cost looking for translations). `ccr --help`, median of 10 interleaved runs on the 2-core dev
box, .pyc compiled: 279-289 ms before this scheme (handlers importing inside their bodies, every parser
built), 250-281 ms with it; importing sidecars.cli and building the parser, CPU, median of 30: 196 ms ->
185 ms. What remains is Python's start and the packages whose `__init__` is not light: sidecars.spec's
pydantic models (~100 ms; sidecars.firewall imports it too), sidecars.firewall (~45 ms: httpx,
OpenTelemetry), sidecars.attestation (~30 ms: cryptography's x509).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .common.errors import CcrError, ConfigError, SpecError
from .common.untrusted import UntrustedInputError, load_json, read_bounded
from .spec import CleanRoomSpec, endpoint_variables, load_spec

T = TypeVar("T")


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
        return load_json(read_bounded(Path(args.endpoints)))
    except OSError as exc:
        raise ConfigError(f"--endpoints {args.endpoints}: {exc.strerror or exc}") from None
    except UntrustedInputError as exc:
        raise ConfigError(f"--endpoints {args.endpoints}: the file {exc}") from None


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


Verbs = Callable[[Subcommands], object]
# Each noun's verb-adding functions not yet run (see `subcommands`).
_PENDING: weakref.WeakKeyDictionary[argparse.ArgumentParser, list[Verbs]] = weakref.WeakKeyDictionary()


def noun(sub: Subcommands, name: str, help: str | None = None, description: str | None = None, *,
         verbs: Verbs, **kwargs) -> None:
    """`ccr ... NAME VERB`: `help` is the noun's line in its group's listing, `description` (shown by
    `--help`) says what the noun is; a shared noun's come from SHARED_NOUNS. `verbs(commands)` adds its
    verbs, when the noun is first used (`subcommands`). Several packages may add verbs to one noun (e.g.
    `ccr logs download` and `ccr logs export`)."""
    parser = sub.choices.get(name)
    if parser is None:
        if help is None and description is None:
            help, description = SHARED_NOUNS.get(name, (None, None))
        if not help or not description:
            raise ValueError(f"noun {name!r} needs a help line and a description")
        parser = sub.add_parser(name, help=help, description=description, **kwargs)
        parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    _PENDING.setdefault(parser, []).append(verbs)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The nouns or verbs under `parser` (empty for a command); a noun's verbs are added here, once."""
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if action is None:
        return {}
    for verbs in _PENDING.pop(parser, ()):
        verbs(action)
    return action.choices


def reach(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[str, ...]:
    """The words of argv that name a command (`room up`, `governance member create`), the verbs of each noun
    on the way added; () when they name none. Parsing argv needs the nouns it names to have their verbs."""
    path: list[str] = []
    for word in argv:
        choices = subcommands(parser)
        if not choices:
            break
        if word not in choices:
            return ()
        parser = choices[word]
        path.append(word)
    return tuple(path) if path and not subcommands(parser) else ()


def parser_at(parser: argparse.ArgumentParser, words: Sequence[str]) -> argparse.ArgumentParser | None:
    """The noun or command `ccr WORDS...`, or None."""
    for word in words:
        found = subcommands(parser).get(word)
        if found is None:
            return None
        parser = found
    return parser


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
