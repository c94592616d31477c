"""`ccr telemetry download|show` and `ccr logs download|show`: the party side of telemetry export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    telemetry = subparsers.add_parser("telemetry", help="download and view a room's exported telemetry")
    t_sub = telemetry.add_subparsers(dest="telemetry_command", metavar="SUBCOMMAND", required=True)
    _add_download(t_sub, "telemetry_sink", "telemetry (traces, metrics, sidecar logs)")
    _add_show(t_sub)

    from ..cliargs import command_group

    l_sub = command_group(subparsers, "logs", "a running room's logs, or a room's exported app logs")
    _add_download(l_sub, "log_sink", "app logs (stdout/stderr)")
    _add_show(l_sub)


def _add_download(sub, sink_field: str, what: str) -> None:
    from ..cliargs import add_spec_variable_options

    parser = sub.add_parser(
        "download", help=f"fetch, verify and decrypt exported {what}",
        description=f"Fetch every object of the {sink_field.replace('_', ' ')}, verify and decrypt it with the "
                    "sink's data encryption key, and write the clear OTLP objects under --out. One object that "
                    "fails verification refuses the whole download.")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write the decrypted objects")
    parser.add_argument("--dek-file", metavar="FILE",
                        help="the sink's DEK file, as `ccr data publish` keeps it (default: "
                             "~/.ccr/deks/ACCOUNT-CONTAINER.json)")
    parser.add_argument("--spec", metavar="FILE", help=f"clean room spec naming the sink (telemetry.{sink_field})")
    add_spec_variable_options(parser)
    parser.add_argument("--account-url", help="blob service URL (instead of --spec)")
    parser.add_argument("--container", help="blob container (instead of --spec)")
    parser.add_argument("--prefix", default="", help="only objects under this prefix (e.g. the room's name)")
    parser.add_argument("--account-key", help="storage account key (default $AZURE_STORAGE_KEY, else your Azure "
                                              "credential)")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for an HTTPS storage endpoint")
    parser.set_defaults(func=_cmd_download, sink_field=sink_field)


def _add_show(sub) -> None:
    parser = sub.add_parser(
        "show", help="show downloaded telemetry: span trees, metrics, logs",
        description="Print traces as indented span trees with durations and errors, metrics as a table and "
                    "logs in time order; with --html also write a self-contained page with a waterfall of the "
                    "startup trace and the logs.")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="folders written by `download`")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    parser.add_argument("--title", default="Clean room telemetry", help="title of the HTML report")
    parser.set_defaults(func=_cmd_show)


def _cmd_download(args: argparse.Namespace) -> int:
    from ..common.azure_clients import account_name_of
    from ..common.deks import default_dek_file, load_dek_file
    from ..common.errors import ConfigError
    from .download import download_sink
    from .sinks import SinkLocation

    if args.spec:
        from ..cliargs import load_spec_from_args

        sink = getattr(load_spec_from_args(args).telemetry, args.sink_field)
        if sink is None:
            raise ConfigError(f"{args.spec}: the spec has no telemetry.{args.sink_field}")
        account_url, container = str(sink.store.account_url), sink.store.container
        account_url, container = args.account_url or account_url, args.container or container
    elif args.account_url and args.container:
        account_url, container = args.account_url, args.container
    else:
        raise ConfigError("name the sink: --spec FILE, or --account-url URL and --container NAME")
    location = SinkLocation(account_url.rstrip("/"), container)
    key = load_dek_file(Path(args.dek_file) if args.dek_file else default_dek_file(account_name_of(account_url),
                                                                                     container))
    ca_bundle = args.ca_bundle
    if ca_bundle is None and getattr(args, "endpoints", None):
        from ..spec import endpoint_variables

        ca_bundle = endpoint_variables(args.endpoints).get("ca_bundle")  # the local stand-ins' CA
    written = download_sink(location, key, args.out, prefix=args.prefix, account_key=args.account_key,
                            ca_bundle=ca_bundle, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    size = sum(p.stat().st_size for p in written)
    print(f"verified and decrypted {len(written)} objects ({size / 1024:.1f} KiB) into {args.out}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .htmlview import render_html
    from .model import load_directories
    from .textview import render_text

    view = load_directories(args.dirs)
    sys.stdout.write(render_text(view))
    if args.html:
        Path(args.html).write_text(render_html(view, title=args.title))
        print(f"\nwrote {args.html}")
    return 0
