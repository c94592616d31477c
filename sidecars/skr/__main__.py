"""`ccr sidecar run skr` / `python -m sidecars.skr`: the SKR sidecar (attestation and secure key release).

In a room it is configured from the room (`sidecar.configure`); these options configure it standalone."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from azure.core.exceptions import AzureError

from ..attestation import MockPlatform, MockSnpProvider, RealSnpProvider
from ..attestation.providers import SECURITY_CONTEXT_ENV
from ..attestation.simulated import SimulatedSnpProvider, simulated_socket
from ..cliargs import add_listen_options, add_spec_variable_options, load_spec_from_args, run_standalone
from ..common.devtokens import DevTokenCredential
from ..common.errors import ConfigError, Forbidden
from ..common.http import serve
from ..common.imds import ImdsCredential
from ..common.logs import configure_logging
from ..common.otel import setup_telemetry
from ..spec import endpoint_variables
from .app import build_app
from .audit import ReleaseAudit
from .destinations import Destinations
from .flow import KeyReleaser
from .sidecar import PLATFORMS, SKR, SkrConfig

log = logging.getLogger("ccr.skr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccr sidecar run skr",
        description="Attestation and secure key release for a clean room, with the API of Microsoft's SKR "
                    "sidecar. Evidence comes from /dev/sev-guest, or from a mock SEV-SNP platform (local "
                    "emulation only).")
    add_listen_options(parser, SKR.port())
    parser.add_argument("--spec", metavar="FILE",
                        help="the room's spec (YAML, or its canonical JSON): contact only the attestation services "
                             "and vaults it names (default: any, as Microsoft's SKR sidecar)")
    add_spec_variable_options(parser)
    parser.add_argument("--ca-bundle", metavar="FILE", help="CA bundle for MAA and Key Vault TLS (default: system)")
    parser.add_argument("--platform", choices=PLATFORMS, default="auto",
                        help="evidence source: sev-snp = /dev/sev-guest; simulated = the report socket of `ccr aci "
                             "run` in UVM_SECURITY_CONTEXT_DIR; mock = --mock-platform-dir; auto = the first of "
                             "these present")
    parser.add_argument("--mock-platform-dir", metavar="DIR", help="the mock platform (ccr emulators start makes one)")
    parser.add_argument("--host-data", metavar="HEX", help="mock: HOST_DATA (the CCE policy hash), 64 hex digits")
    parser.add_argument("--measurement", metavar="HEX", help="mock: MEASUREMENT, 96 hex digits (default: endorsed)")
    parser.add_argument("--debuggable", action="store_true", help="mock: set the debug bit in the report policy")
    parser.add_argument("--governance-url", metavar="URL",
                        help="record each release in CGS through this governance sidecar first; no key is handed "
                             "out unless CGS acknowledged (default: releases are not audited)")
    parser.add_argument("--sidecar-token-file", type=Path, metavar="FILE",
                        help="the sidecars' token, to audit under scope 'skr'")
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


def config_from_args(args: argparse.Namespace) -> SkrConfig:
    """The standalone configuration; `--endpoints` fills in the CA bundle, mock platform and dev tokens."""
    endpoints = endpoint_variables(args.endpoints) if args.endpoints else {}
    return SkrConfig(
        port=args.port, host=args.host, ready_file=args.ready_file, platform=args.platform,
        mock_platform_dir=args.mock_platform_dir or endpoints.get("mock_platform_dir"),
        host_data=_hex(args.host_data, 32, "--host-data"), measurement=_hex(args.measurement, 48, "--measurement"),
        debuggable=args.debuggable, ca_bundle=args.ca_bundle or endpoints.get("ca_bundle"),
        dev_tokens_dir=args.dev_tokens_dir or endpoints.get("dev_tokens_dir"),
        destinations=Destinations.from_spec(load_spec_from_args(args)) if args.spec else Destinations(),
        governance_url=args.governance_url, sidecar_token_file=args.sidecar_token_file)


NO_PLATFORM = ("no SEV-SNP device (/dev/sev-guest) and no simulator socket: this container is not on "
               "Confidential ACI")


def choose_platform(config: SkrConfig) -> str:
    """The evidence source `auto` stands for here: hardware first; the mock only when configured with one."""
    if config.platform != "auto":
        return config.platform
    if RealSnpProvider.available():
        return "sev-snp"
    if simulated_socket(config.security_context_dir):
        return "simulated"
    if config.mock_platform_dir:
        return "mock"
    raise ConfigError(NO_PLATFORM)


def build_provider(config: SkrConfig):
    platform = choose_platform(config)
    context_dir = config.security_context_dir or os.environ.get(SECURITY_CONTEXT_ENV)
    if platform == "sev-snp":
        return RealSnpProvider(security_context_dir=context_dir)
    if platform == "simulated":
        return SimulatedSnpProvider(security_context_dir=context_dir)
    if not config.mock_platform_dir:
        raise ConfigError("--platform mock needs --mock-platform-dir DIR (or --endpoints): the local stand-ins' "
                          "mock platform")
    kwargs = {"host_data": config.host_data or bytes(32), "debug": config.debuggable}
    if config.measurement is not None:
        kwargs["measurement"] = config.measurement
    return MockSnpProvider(MockPlatform.load(config.mock_platform_dir), **kwargs)


def build_token_source(config: SkrConfig):
    if config.dev_tokens_dir:
        credential = DevTokenCredential.from_dir(config.dev_tokens_dir, subject="skr")
    elif config.identity_url:
        credential = ImdsCredential(config.identity_url)
    else:
        from azure.identity import ManagedIdentityCredential  # lazy: 245 ms, unused with the stand-ins

        credential = ManagedIdentityCredential()

    def token(scope: str) -> str:
        try:
            return credential.get_token(scope).token
        except AzureError as exc:
            message = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
            raise Forbidden(f"cannot get an access token for {scope} from {type(credential).__name__}: "
                            f"{message}") from None

    return token


def run(config: SkrConfig) -> int:
    configure_logging()
    setup_telemetry("skr")

    if config.governance_url is None:
        log.warning("no governance sidecar: key releases are not recorded in CGS")
    audit = ReleaseAudit(config.governance_url, config.sidecar_token_file) if config.governance_url else None
    provider = build_provider(config)
    log.info("evidence from the %s platform", provider.platform_kind)
    if provider.platform_kind != "sev-snp":
        log.warning("this room runs on the %s platform, not SEV-SNP hardware: Azure Attestation never accepts "
                    "its evidence", provider.platform_kind)
    releaser = KeyReleaser(provider, ca_bundle=config.ca_bundle, token_source=build_token_source(config),
                           destinations=config.destinations, audit=audit)
    serve(build_app(releaser), config.host, config.port, ready_file=config.ready_file)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("skr", build_parser(), config_from_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
