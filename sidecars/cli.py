"""The `ccr` command line.

Every command is `ccr NOUN VERB` (`ccr governance NOUN VERB` inside governance). Each package that has
commands provides `sidecars/<package>/cli.py` with `register(subparsers)`; this module discovers them, so
adding a sidecar's commands never touches this file. Commands name their handler as "module:function"
(`cliargs.add_command`), imported only to run it; the spellings from before `NOUN VERB` still work for one
release (`oldspellings`). Handlers return an exit code. Any `CcrError` (a user's mistake, a refusal, an
unreachable service) ends in one line on stderr and exit code 1; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

import sidecars

from .cliargs import add_command, add_spec_variable_options, noun, reach, run_handler
from .common.errors import CcrError
from .common.logs import configure_logging
from .oldspellings import print_deprecation, respell


def _spec_verbs(spec: argparse._SubParsersAction) -> None:
    validate = add_command(spec, "validate", "sidecars.room.commands:cmd_spec_validate",
                           "check a spec: prints OK, or one line per problem")
    validate.add_argument("spec", metavar="SPEC", help="clean room spec (YAML)")
    add_spec_variable_options(validate)


def _sidecar_verbs(sidecar: argparse._SubParsersAction) -> None:
    # lazy: the registry imports every sidecar's record (60 ms), needed only for `ccr sidecar`
    from .room.registry import REGISTRY

    add_command(sidecar, "list", "sidecars.room.commands:cmd_sidecar_list",
                "every sidecar of a room: its ports, startup wave, image and privileges")
    run = add_command(sidecar, "run", "sidecars.room.commands:cmd_sidecar_run",
                      "run one sidecar in the foreground (as its container does)",
                      "Run one sidecar in the foreground. Without options, in a room (CCR_SPEC set: a container "
                      "of the group, or a process of `ccr room up`), it configures itself from the room; with "
                      "options, it runs standalone (ccr sidecar run NAME --help).",
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="sidecars:\n" + "\n".join(f"  {s.name:<11} {s.summary}" for s in REGISTRY))
    run.add_argument("name", choices=REGISTRY.names, metavar="NAME", help="one of: " + ", ".join(REGISTRY.names))
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="OPTIONS",
                     help="the sidecar's own options (see ccr sidecar run NAME --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command tree: each noun with its help line; a noun's verbs are added when it is first used
    (`cliargs.subcommands`), so `ccr --help` and each command build only what they need."""
    parser = argparse.ArgumentParser(
        prog="ccr",
        description="Confidential clean room runtime: run a clean room locally (ccr room up), render it for "
                    "docker-compose or Confidential ACI (ccr spec render), and act as a party (keys, data, "
                    "governance). Every command is `ccr NOUN VERB`; `ccr NOUN --help` lists a noun's verbs.",
    )
    parser.add_argument("--version", action="version", version=f"ccr {sidecars.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="NOUN")

    noun(sub, "spec", verbs=_spec_verbs)
    noun(sub, "sidecar", "the room's sidecars: list them, run one in the foreground",
         "A sidecar is one of the room's own services (`ccr sidecar list`: skr, volumes, governance, identity, "
         "firewall, proxy, telemetry, launcher), each in its own container next to the app's.",
         verbs=_sidecar_verbs)
    root = Path(sidecars.__file__).parent
    for info in sorted(pkgutil.iter_modules([str(root)]), key=lambda i: i.name):
        if info.ispkg and (root / info.name / "cli.py").exists():
            importlib.import_module(f"sidecars.{info.name}.cli").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv, deprecation = respell(sys.argv[1:] if argv is None else argv, parser)
    print_deprecation(deprecation)
    reach(parser, argv)  # the nouns argv names get their verbs, which parsing needs
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    configure_logging()
    try:
        return run_handler(args)
    except CcrError as exc:
        print(f"ccr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ccr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
