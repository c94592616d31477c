"""`ccr sidecar run telemetry`: the OTLP receiver, encrypted buffer and consent-gated exporter of a room.

In a room it is configured from the room (`sidecar.configure`); these options configure it standalone."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from azure.core.exceptions import AzureError

from ..cliargs import add_spec_variable_options, load_spec_from_args, run_standalone
from ..common.azure_clients import default_credential
from ..common.deks import load_dek_file
from ..common.errors import ConfigError, RemoteServiceError
from ..common.governance_client import GovernanceClient
from ..common.http import serve
from ..common.keyflow import fetch_dek
from ..common.logs import configure_logging
from ..common.otel import attach_parent_from_env, setup_telemetry
from ..common.room import read_sidecar_token
from ..spec import KeyReference
from .app import build_app
from .buffer import EncryptedBuffer
from .export import Exporter, SinkConfig
from .receiver import start_grpc
from .sidecar import TELEMETRY, TelemetrySidecarConfig
from .signals import SinkKind
from .sinks import SinkLocation

log = logging.getLogger("ccr.telemetry")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccr sidecar run telemetry",
        description="Receive OTLP from the room's sidecars and the app's output from the launcher, keep it "
                    "encrypted in memory-keyed storage, and export it encrypted to the spec's telemetry and "
                    "log sinks only when governance says the telemetry (resp. logging) option is enabled.")
    parser.add_argument("--spec", metavar="FILE", help="clean room spec: its telemetry.telemetry_sink and log_sink")
    add_spec_variable_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, default=TELEMETRY.port("grpc"),
                        help="OTLP/gRPC port (default %(default)s; 0 = free port)")
    parser.add_argument("--http-port", type=int, default=TELEMETRY.port("http"),
                        help="OTLP/HTTP, app log hand-over and export port (default %(default)s; 0 = free port)")
    parser.add_argument("--governance-url", required=True,
                        help="governance sidecar base URL for consent checks and audit")
    parser.add_argument("--sidecar-token-file", type=Path, help="token for auditing under scope 'telemetry'")
    parser.add_argument("--telemetry-dek-file", type=Path,
                        help="the telemetry sink's DEK file (ccr-dek/v1); default: released in the room through "
                             "skr from the key reference in the spec")
    parser.add_argument("--log-dek-file", type=Path, help="the log sink's DEK file (default: released, "
                                                          "as for the telemetry sink)")
    parser.add_argument("--skr-url", help="the skr sidecar, which releases the sinks' keys (else: DEK files)")
    parser.add_argument("--identity-url", help="IMDS-shaped token endpoint (the identity sidecar) for storage and "
                                               "Key Vault")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for HTTPS storage and Key Vault")
    parser.add_argument("--export-interval", type=float, metavar="SECONDS",
                        help="export continuously at this interval (overrides the sinks' export_interval_s)")
    parser.add_argument("--buffer-dir", type=Path, help="where the encrypted buffer file lives (default: a fresh "
                                                        "temporary directory)")
    parser.add_argument("--room", help="name used as the exported objects' prefix (default: the spec's name)")
    parser.add_argument("--ready-file", type=Path,
                        help='written once listening: {"grpc_port", "http_port", "url"}')
    return parser


def config_from_args(args: argparse.Namespace) -> TelemetrySidecarConfig:
    return TelemetrySidecarConfig(
        grpc_port=args.grpc_port, http_port=args.http_port, host=args.host, ready_file=args.ready_file,
        spec=load_spec_from_args(args) if args.spec else None, governance_url=args.governance_url,
        skr_url=args.skr_url, identity_url=args.identity_url, ca_bundle=args.ca_bundle,
        sidecar_token_file=args.sidecar_token_file, telemetry_dek_file=args.telemetry_dek_file,
        log_dek_file=args.log_dek_file, export_interval_s=args.export_interval, buffer_dir=args.buffer_dir,
        room_name=args.room)


def _sink_configs(config: TelemetrySidecarConfig):
    spec = config.spec
    if spec is None:
        return [], config.room_name or "room"
    configs = []
    for kind, sink, dek_file in ((SinkKind.TELEMETRY, spec.telemetry.telemetry_sink, config.telemetry_dek_file),
                                 (SinkKind.LOGS, spec.telemetry.log_sink, config.log_dek_file)):
        if sink is None:
            continue
        if dek_file:
            key = load_dek_file(dek_file)  # read now: a wrong path fails at start, naming the file
            key_source = _fixed(key)
        else:
            key_source = functools.partial(_released_dek, config, sink.encryption.key, sink.store.identity)
        interval = config.export_interval_s if config.export_interval_s is not None else sink.export_interval_s
        if sink.store.kind == "s3":
            from . import s3access  # lazy: boto3 adds 70 ms to the sidecar's start, needed only for an S3 sink

            configs.append(SinkConfig(kind, s3access.s3_location(sink.store), key_source, interval or None,
                                      connect=s3access.connector(sink.store, ca_bundle=config.ca_bundle)))
            continue
        location = SinkLocation(str(sink.store.account_url).rstrip("/"), sink.store.container)
        configs.append(SinkConfig(kind, location, key_source, interval or None,
                                  credential=_credential(config, sink.store.identity)))
    return configs, config.room_name or spec.name


def _fixed(key):
    return lambda: key


def _credential(config: TelemetrySidecarConfig, identity=None):
    """The room's identity (the identity sidecar's IMDS tokens) for Key Vault and storage, when given: the
    sink's own federated identity (its client id) if the spec names one."""

    if not config.identity_url:
        return None
    return default_credential(config.identity_url, client_id=identity.client_id if identity else None)


def _released_dek(config: TelemetrySidecarConfig, reference: KeyReference, identity=None):
    """The sink's DEK as a volume's: the wrapped DEK from Key Vault, unwrapped with the KEK skr releases."""


    if not config.skr_url:
        raise ConfigError("no skr to release the sink's key: give the sink's DEK file, or --skr-url")
    try:
        return fetch_dek(skr_url=config.skr_url, maa_endpoint=str(reference.maa_endpoint),
                         kek_vault_url=str(reference.vault_url), kek_name=reference.kek_name,
                         secret_vault_url=reference.dek_vault_url, secret_name=reference.dek_secret_name,
                         credential=_credential(config, identity), ca_bundle=config.ca_bundle)
    except AzureError as exc:
        raise RemoteServiceError("Key Vault", f"cannot read the sink's wrapped DEK {reference.dek_secret_name} "
                                              f"from {reference.dek_vault_url}: {str(exc).splitlines()[0]}") from None


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("telemetry", build_parser(), config_from_args, run, argv)


def run(config: TelemetrySidecarConfig) -> int:
    configure_logging()
    sinks, room = _sink_configs(config)
    # Like every sidecar, its own requests are traced when an OTLP endpoint is configured (another
    # collector; a room does not point the telemetry sidecar at itself).
    attach_parent_from_env()
    own_telemetry = setup_telemetry("telemetry")
    if config.buffer_dir:
        config.buffer_dir.mkdir(parents=True, exist_ok=True)
    buffer_dir = config.buffer_dir or Path(tempfile.mkdtemp(prefix="ccr-telemetry-"))
    buffer = EncryptedBuffer(buffer_dir / "buffer.bin")
    token = read_sidecar_token(config.sidecar_token_file)
    governance = GovernanceClient(config.governance_url, scope="telemetry", token=token)
    exporter = Exporter(buffer, governance, sinks, room=room, ca_bundle=config.ca_bundle,
                        credential=_credential(config))
    grpc_server, grpc_port = start_grpc(buffer, config.host, config.grpc_port)

    def on_ready(http_port: int) -> None:
        log.info("OTLP on gRPC %s:%d and HTTP %s:%d; sinks: %s", config.host, grpc_port, config.host, http_port,
                 ", ".join(f"{s.kind.value} → {s.location.describe()}" for s in sinks) or "none")
        exporter.start_continuous()
        if config.ready_file:
            ready = {"grpc_port": grpc_port, "http_port": http_port, "url": f"http://{config.host}:{http_port}"}
            tmp = config.ready_file.with_name(config.ready_file.name + ".tmp")
            tmp.write_text(json.dumps(ready))
            tmp.replace(config.ready_file)

    # uvicorn re-raises the SIGTERM/SIGINT it caught once it has shut down; noting it here (instead of the
    # default action, dying) lets the final export below run, and the room stop with exit code 0.
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    try:
        if not stopping:
            serve(build_app(buffer, exporter), config.host, config.http_port, on_ready=on_ready)
    finally:
        grpc_server.stop(grace=2).wait()
        exporter.stop()
        governance.close()
        buffer.close()
        buffer.path.unlink(missing_ok=True)
        own_telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
