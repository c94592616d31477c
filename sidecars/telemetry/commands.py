"""The handlers of `ccr telemetry download|show` and `ccr logs download|show` (registered in cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cliargs import load_spec_from_args
from ..common.azure_clients import account_name_of
from ..common.deks import default_dek_file, load_dek_file
from ..common.errors import ConfigError
from ..spec import endpoint_variables
from .download import download_sink
from .htmlview import render_html
from .model import load_directories
from .sinks import SinkLocation
from .textview import render_text


def download(args: argparse.Namespace) -> int:
    if args.spec:
        sink = getattr(load_spec_from_args(args).telemetry, args.sink_field)
        if sink is None:
            raise ConfigError(f"{args.spec}: the spec has no telemetry.{args.sink_field}")
        account_url, container = str(sink.store.account_url), sink.store.container
        account_url, container = args.storage_url or account_url, args.container or container
    elif args.storage_url and args.container:
        account_url, container = args.storage_url, args.container
    else:
        raise ConfigError("name the sink: --spec SPEC, or --storage-url URL and --container NAME")
    location = SinkLocation(account_url.rstrip("/"), container)
    key = load_dek_file(Path(args.dek_file) if args.dek_file else default_dek_file(account_name_of(account_url),
                                                                                     container))
    ca_bundle = args.ca_bundle
    if ca_bundle is None and getattr(args, "endpoints", None):
        ca_bundle = endpoint_variables(args.endpoints).get("ca_bundle")  # the local stand-ins' CA
    written = download_sink(location, key, args.output, prefix=args.prefix, account_key=args.account_key,
                            ca_bundle=ca_bundle, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    size = sum(p.stat().st_size for p in written)
    print(f"verified and decrypted {len(written)} objects ({size / 1024:.1f} KiB) into {args.output}")
    return 0


def show(args: argparse.Namespace) -> int:
    view = load_directories(args.dirs)
    sys.stdout.write(render_text(view))
    if args.output:
        Path(args.output).write_text(render_html(view, title=args.title))
        print(f"\nwrote {args.output}")
    return 0
