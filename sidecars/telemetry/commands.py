"""The handlers of `ccr telemetry download|show` and `ccr logs download|show` (registered in cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cliargs import load_spec_from_args
from ..common.azure_clients import account_name_of
from ..common.deks import default_dek_file, load_dek_file
from ..common.errors import ConfigError
from ..common.s3_clients import s3_client
from ..spec import S3Store, endpoint_variables
from .download import download_sink
from .htmlview import render_html
from .model import load_directories
from .s3access import s3_location
from .sinks import S3Sink, SinkLocation
from .textview import render_text


def download(args: argparse.Namespace) -> int:
    if args.spec:
        sink = getattr(load_spec_from_args(args).telemetry, args.sink_field)
        if sink is None:
            raise ConfigError(f"{args.spec}: the spec has no telemetry.{args.sink_field}")
        if sink.store.kind == "s3":
            return _download_s3(args, sink.store)
        account_url, container = str(sink.store.account_url), sink.store.container
        account_url, container = args.storage_url or account_url, args.container or container
    elif args.storage_url and args.container:
        account_url, container = args.storage_url, args.container
    else:
        raise ConfigError("name the sink: --spec SPEC, or --storage-url URL and --container NAME")
    location = SinkLocation(account_url.rstrip("/"), container)
    key = load_dek_file(Path(args.dek_file) if args.dek_file else default_dek_file(account_name_of(account_url),
                                                                                     container))
    written = download_sink(location, key, args.output, prefix=args.prefix, account_key=args.account_key,
                            ca_bundle=_ca_bundle(args), progress=_progress)
    return _done(args, written)


def _download_s3(args: argparse.Namespace, store: S3Store) -> int:
    """A sink in S3, read with the owner's own AWS credentials (boto3's chain: AWS_* variables, profiles)."""
    if not args.dek_file:
        raise ConfigError("an S3 sink's key: pass --dek-file (the sink's DEK, as its owner keeps it)")
    ca_bundle = _ca_bundle(args)
    location = s3_location(store)
    sink = S3Sink(location, s3_client(store, None, ca_bundle=ca_bundle))
    written = download_sink(location, load_dek_file(Path(args.dek_file)), args.output, prefix=args.prefix,
                            progress=_progress, sink=sink)
    return _done(args, written)


def _ca_bundle(args: argparse.Namespace) -> str | None:
    if args.ca_bundle is None and getattr(args, "endpoints", None):
        return endpoint_variables(args.endpoints).get("ca_bundle")  # the local stand-ins' CA
    return args.ca_bundle


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _done(args: argparse.Namespace, written: list[Path]) -> int:
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
