"""`ccr sidecar run telemetry`: the OTLP receiver, encrypted buffer and consent-gated exporter of a room."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..common.errors import CcrError, ConfigError
from ..common.logs import configure_logging
from .signals import SinkKind

log = logging.getLogger("ccr.telemetry")


def build_parser() -> argparse.ArgumentParser:
    from ..cliargs import add_spec_variable_options

    parser = argparse.ArgumentParser(
        prog="ccr sidecar run telemetry",
        description="Receive OTLP from the room's sidecars and the app's output from the launcher, keep it "
                    "encrypted in memory-keyed storage, and export it encrypted to the spec's telemetry and "
                    "log sinks only when governance says the telemetry (resp. logging) option is enabled.")
    parser.add_argument("--spec", metavar="FILE", help="clean room spec: its telemetry.telemetry_sink and log_sink "
                                                       "(default: the resolved spec JSON in $CCR_SPEC, as the "
                                                       "container group passes it)")
    add_spec_variable_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (default 4317; 0 = free port)")
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("CCR_PORT", "4318")),
                        help="OTLP/HTTP, app log hand-over and export port (default $CCR_PORT or 4318; 0 = free "
                             "port)")
    parser.add_argument("--governance-url", default=os.environ.get("CCR_GOVERNANCE_URL", "http://127.0.0.1:8300"),
                        help="governance sidecar base URL for consent checks and audit (default "
                             "$CCR_GOVERNANCE_URL or http://127.0.0.1:8300)")
    parser.add_argument("--sidecar-token-file", metavar="FILE", help="token for auditing under scope 'telemetry'")
    parser.add_argument("--telemetry-dek-file", metavar="FILE",
                        help="the telemetry sink's DEK file (ccr-dek/v1); default: released in the room through "
                             "skr from the key reference in the spec")
    parser.add_argument("--log-dek-file", metavar="FILE", help="the log sink's DEK file (default: released, "
                                                                "as for the telemetry sink)")
    parser.add_argument("--skr-url", default=os.environ.get("CCR_SKR_URL", "http://127.0.0.1:8284"),
                        help="the skr sidecar (default $CCR_SKR_URL or http://127.0.0.1:8284)")
    parser.add_argument("--identity-url", default=os.environ.get("CCR_IDENTITY_URL"),
                        help="IMDS-shaped token endpoint (the identity sidecar) for storage and Key Vault "
                             "(default $CCR_IDENTITY_URL)")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA bundle for HTTPS storage and Key Vault")
    parser.add_argument("--export-interval", type=float, metavar="SECONDS",
                        help="export continuously at this interval (overrides the sinks' export_interval_s)")
    parser.add_argument("--buffer-dir", metavar="DIR", help="where the encrypted buffer file lives (default: a "
                                                              "fresh temporary directory)")
    parser.add_argument("--room", help="name used as the exported objects' prefix (default: the spec's name)")
    parser.add_argument("--ready-file", metavar="FILE",
                        help='written once listening: {"grpc_port", "http_port", "url"}')
    return parser


def _sink_configs(args: argparse.Namespace):
    from ..cliargs import load_spec_from_args
    from ..common.deks import load_dek_file
    from ..spec import EncryptionMode
    from .export import SinkConfig
    from .sinks import SinkLocation

    if args.spec:
        spec = load_spec_from_args(args)
    elif os.environ.get("CCR_SPEC"):
        from ..spec import parse_spec

        try:
            data = json.loads(os.environ["CCR_SPEC"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"CCR_SPEC is not JSON: {exc.msg}") from None
        spec = parse_spec(data, source="CCR_SPEC")
    else:
        return [], args.room or "room"
    configs = []
    for kind, sink, dek_file in ((SinkKind.TELEMETRY, spec.telemetry.telemetry_sink, args.telemetry_dek_file),
                                 (SinkKind.LOGS, spec.telemetry.log_sink, args.log_dek_file)):
        if sink is None:
            continue
        if sink.encryption.mode is not EncryptionMode.CSE:
            raise ConfigError(f"the {kind.value} sink must use encryption mode CSE: exported telemetry leaves "
                              "the room only as ciphertext")
        if dek_file:
            key = load_dek_file(Path(dek_file))  # read now: a wrong path fails at start, naming the file
            key_source = _fixed(key)
        else:
            key_source = functools.partial(_released_dek, args, sink.encryption.key, sink.store.identity)
        location = SinkLocation(str(sink.store.account_url).rstrip("/"), sink.store.container)
        interval = args.export_interval if args.export_interval is not None else sink.export_interval_s
        configs.append(SinkConfig(kind, location, key_source, interval or None,
                                  credential=_credential(args, sink.store.identity)))
    return configs, args.room or spec.name


def _fixed(key):
    return lambda: key


def _credential(args: argparse.Namespace, identity=None):
    """The room's identity (the identity sidecar's IMDS tokens) for Key Vault and storage, when given: the
    sink's own federated identity (its client id) if the spec names one."""
    from ..common.azure_clients import default_credential

    if not args.identity_url:
        return None
    return default_credential(args.identity_url, client_id=identity.client_id if identity else None)


def _released_dek(args: argparse.Namespace, reference, identity=None):
    """The sink's DEK as a volume's: the wrapped DEK from Key Vault, unwrapped with the KEK skr releases."""
    from azure.core.exceptions import AzureError

    from ..common.errors import RemoteServiceError
    from ..common.keyflow import fetch_dek

    try:
        return fetch_dek(skr_url=args.skr_url, maa_endpoint=str(reference.maa_endpoint),
                         kek_vault_url=str(reference.vault_url), kek_name=reference.kek_name,
                         secret_vault_url=reference.dek_vault_url, secret_name=reference.dek_secret_name,
                         credential=_credential(args, identity), ca_bundle=args.ca_bundle)
    except AzureError as exc:
        raise RemoteServiceError("Key Vault", f"cannot read the sink's wrapped DEK {reference.dek_secret_name} "
                                              f"from {reference.dek_vault_url}: {str(exc).splitlines()[0]}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return _run(args)
    except CcrError as exc:
        print(f"ccr sidecar run telemetry: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from ..common.governance_client import GovernanceClient
    from ..common.http import serve
    from ..common.otel import attach_parent_from_env, setup_telemetry
    from .app import build_app
    from .buffer import EncryptedBuffer
    from .export import Exporter
    from .receiver import start_grpc

    sinks, room = _sink_configs(args)
    # Like every sidecar, its own requests are traced when an OTLP endpoint is configured (another
    # collector; a room does not point the telemetry sidecar at itself).
    attach_parent_from_env()
    own_telemetry = setup_telemetry("telemetry")
    buffer_dir = Path(args.buffer_dir or tempfile.mkdtemp(prefix="ccr-telemetry-"))
    buffer = EncryptedBuffer(buffer_dir / "buffer.bin")
    token = None
    if args.sidecar_token_file:
        try:
            token = Path(args.sidecar_token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--sidecar-token-file {args.sidecar_token_file}: {exc.strerror}") from None
    governance = GovernanceClient(args.governance_url, scope="telemetry", token=token)
    exporter = Exporter(buffer, governance, sinks, room=room, ca_bundle=args.ca_bundle, credential=_credential(args))
    grpc_server, grpc_port = start_grpc(buffer, args.host, args.grpc_port)

    def on_ready(http_port: int) -> None:
        log.info("OTLP on gRPC %s:%d and HTTP %s:%d; sinks: %s", args.host, grpc_port, args.host, http_port,
                 ", ".join(f"{s.kind.value} → {s.location.describe()}" for s in sinks) or "none")
        exporter.start_continuous()
        if args.ready_file:
            ready = {"grpc_port": grpc_port, "http_port": http_port, "url": f"http://{args.host}:{http_port}"}
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(json.dumps(ready))
            tmp.replace(args.ready_file)

    # uvicorn re-raises the SIGTERM/SIGINT it caught once it has shut down; noting it here (instead of the
    # default action, dying) lets the final export below run, and the room stop with exit code 0.
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    try:
        if not stopping:
            serve(build_app(buffer, exporter), args.host, args.http_port, on_ready=on_ready)
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
