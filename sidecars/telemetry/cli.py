"""`ccr telemetry download|show` and `ccr logs download|show`: the party side of telemetry export."""

from __future__ import annotations

import argparse
from functools import partial

from ..cliargs import add_command, add_spec_variable_options, noun

_COMMANDS = "sidecars.telemetry.commands"


def register(subparsers: argparse._SubParsersAction) -> None:
    for kind, sink_field, what in (("telemetry", "telemetry_sink", "telemetry (traces, metrics, sidecar logs)"),
                                   ("logs", "log_sink", "app logs (stdout/stderr)")):
        noun(subparsers, kind, verbs=partial(_verbs, sink_field, what))


def _verbs(sink_field: str, what: str, sub: argparse._SubParsersAction) -> None:
    _add_download(sub, sink_field, what)
    _add_show(sub, what)


def _add_download(sub: argparse._SubParsersAction, sink_field: str, what: str) -> None:
    parser = add_command(
        sub, "download", f"{_COMMANDS}:download", f"fetch, verify and decrypt exported {what}",
        description=f"Fetch every object of the {sink_field.replace('_', ' ')}, verify and decrypt it with the "
                    "sink's data encryption key, and write the clear OTLP objects under --output. One object that "
                    "fails verification refuses the whole download.")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="where to write the decrypted objects")
    parser.add_argument("--dek-file", metavar="FILE",
                        help="the sink's DEK file, as `ccr data publish` keeps it (default: "
                             "~/.ccr/deks/ACCOUNT-CONTAINER.json)")
    parser.add_argument("--spec", metavar="SPEC", help=f"clean room spec naming the sink (telemetry.{sink_field}); "
                                                       "or name it with --storage-url and --container")
    add_spec_variable_options(parser)
    parser.add_argument("--storage-url", metavar="URL", help="blob service URL (instead of --spec)")
    parser.add_argument("--container", help="blob container (instead of --spec)")
    parser.add_argument("--prefix", default="", help="only objects under this prefix (e.g. the room's name)")
    parser.add_argument("--account-key", help="storage account key (default $AZURE_STORAGE_KEY, else your Azure "
                                              "credential)")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for an HTTPS storage endpoint")
    parser.set_defaults(sink_field=sink_field)


def _add_show(sub: argparse._SubParsersAction, what: str) -> None:
    parser = add_command(
        sub, "show", f"{_COMMANDS}:show", f"show downloaded {what}: span trees, metrics, logs",
        description="Print traces as indented span trees with durations and errors, metrics as a table and "
                    "logs in time order; with --output FILE also write a self-contained HTML page with a "
                    "waterfall of the startup trace and the logs.")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="folders written by `download`")
    parser.add_argument("-o", "--output", metavar="FILE", help="also write a self-contained HTML report")
    parser.add_argument("--title", default="Clean room telemetry", help="title of the HTML report")
