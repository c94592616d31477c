"""`ccr sidecar run skr` / `python -m sidecars.skr`: the SKR sidecar (attestation and secure key release)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..common.errors import CcrError, ConfigError, Forbidden
from ..common.http import serve
from ..common.logs import configure_logging
from ..common.otel import setup_telemetry

DEFAULT_PORT = 8284


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccr sidecar run skr",
        description="Attestation and secure key release for a clean room, with the API of Microsoft's SKR "
                    "sidecar. Evidence comes from /dev/sev-guest, or from a mock SEV-SNP platform (local "
                    "emulation only).")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (keep it on loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks one")
    parser.add_argument("--ready-file", help='written once listening: {"port": N, "url": "http://HOST:N"}')
    parser.add_argument("--endpoints", metavar="FILE",
                        help="endpoints.json from `ccr emulators start`: CA bundle, mock platform, dev tokens")
    parser.add_argument("--spec", metavar="FILE",
                        help="the room's spec (YAML, or its canonical JSON): contact only the attestation services "
                             "and vaults it names (default: any, as Microsoft's SKR sidecar)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for ${NAME} in --spec (repeatable)")
    parser.add_argument("--ca-bundle", metavar="FILE", help="CA bundle for MAA and Key Vault TLS (default: system)")
    parser.add_argument("--platform", choices=["auto", "real", "mock"], default="auto",
                        help="evidence source: real = /dev/sev-guest; auto = real if present, else mock")
    parser.add_argument("--mock-platform-dir", metavar="DIR", help="the mock platform (ccr emulators start makes one)")
    parser.add_argument("--host-data", metavar="HEX", help="mock: HOST_DATA (the CCE policy hash), 64 hex digits")
    parser.add_argument("--measurement", metavar="HEX", help="mock: MEASUREMENT, 96 hex digits (default: endorsed)")
    parser.add_argument("--debuggable", action="store_true", help="mock: set the debug bit in the report policy")
    parser.add_argument("--dev-tokens-dir", metavar="DIR",
                        help="get Key Vault access tokens from the emulation's dev issuer (default: managed "
                             "identity through azure-identity)")
    return parser


def _hex(value: str | None, size: int, option: str) -> bytes | None:
    if value is None:
        return None
    try:
        data = bytes.fromhex(value)
    except ValueError:
        data = b""
    if len(data) != size:
        raise ConfigError(f"{option}: expected {size * 2} hex digits")
    return data


def build_provider(args: argparse.Namespace, endpoints: dict):
    from ..attestation import MockPlatform, MockSnpProvider, RealSnpProvider

    platform = args.platform
    if platform == "auto":
        platform = "real" if RealSnpProvider.available() else "mock"
    if platform == "real":
        return RealSnpProvider()
    directory = args.mock_platform_dir or endpoints.get("mock_platform_dir")
    if not directory:
        raise ConfigError("no /dev/sev-guest here: give --mock-platform-dir DIR (or --endpoints) for a mock platform")
    kwargs = {"host_data": _hex(args.host_data, 32, "--host-data") or bytes(32), "debug": args.debuggable}
    measurement = _hex(args.measurement, 48, "--measurement")
    if measurement is not None:
        kwargs["measurement"] = measurement
    return MockSnpProvider(MockPlatform.load(directory), **kwargs)


def build_token_source(args: argparse.Namespace, endpoints: dict):
    directory = args.dev_tokens_dir or endpoints.get("dev_tokens_dir")
    if directory:
        from ..common.devtokens import DevTokenCredential

        credential = DevTokenCredential.from_dir(directory, subject="skr")
    else:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential()
    def token(scope: str) -> str:
        from azure.core.exceptions import AzureError

        try:
            return credential.get_token(scope).token
        except AzureError as exc:
            message = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
            raise Forbidden(f"cannot get an access token for {scope} from {type(credential).__name__}: "
                            f"{message}") from None

    return token


def destinations(args: argparse.Namespace):
    from .destinations import Destinations

    if not args.spec:
        return Destinations()
    from ..cliargs import load_spec_from_args

    return Destinations.from_spec(load_spec_from_args(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    setup_telemetry("skr")
    from .app import build_app
    from .flow import KeyReleaser

    try:
        endpoints: dict = {}
        if args.endpoints:
            try:
                endpoints = json.loads(Path(args.endpoints).read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--endpoints {args.endpoints}: {exc}") from None
        releaser = KeyReleaser(build_provider(args, endpoints), ca_bundle=args.ca_bundle or endpoints.get("ca_bundle"),
                               token_source=build_token_source(args, endpoints), destinations=destinations(args))
    except CcrError as exc:
        print(f"skr: error: {exc}", file=sys.stderr)
        return 1

    serve(build_app(releaser), args.host, args.port, ready_file=args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
