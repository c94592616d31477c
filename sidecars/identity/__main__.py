"""`ccr sidecar run identity` / `python -m sidecars.identity`: the identity sidecar.

In a room it is configured from the room (`sidecar.configure`); these options configure it standalone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cliargs import add_listen_options, add_spec_variable_options, load_spec_from_args, run_standalone
from ..common.errors import ConfigError
from ..common.http import serve
from ..common.logs import configure_logging
from .service import IdentityConfig, build_app
from .sidecar import ENTRA_ENDPOINT, IDENTITY, IdentitySidecarConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccr sidecar run identity", description="IMDS-compatible managed "
                                     "identity endpoint backed by CGS-issued federated client assertions.")
    add_listen_options(parser, IDENTITY.port())
    parser.add_argument("--governance-url", required=True, help="the governance sidecar")
    parser.add_argument("--entra-endpoint", default=ENTRA_ENDPOINT, help="the Entra authority (default %(default)s)")
    parser.add_argument("--entra-ca-bundle", help="PEM bundle trusted for the Entra endpoint (local CA)")
    parser.add_argument("--tenant-id", help="tenant of identities the spec does not name")
    parser.add_argument("--client-id", help="the identity used when a request names none")
    parser.add_argument("--subject", help="the assertion's sub (default: the contract id)")
    parser.add_argument("--spec", metavar="FILE", help="the room's spec: the tenants of the identities it names")
    add_spec_variable_options(parser)
    parser.add_argument("--identity-header-file", type=Path, help="file holding the secret for the IDENTITY_HEADER "
                                                                  "shape")
    parser.add_argument("--sidecar-token-file", type=Path, help="token for auditing under scope 'identity'")
    return parser


def config_from_args(args: argparse.Namespace) -> IdentitySidecarConfig:
    return IdentitySidecarConfig(
        port=args.port, host=args.host, ready_file=args.ready_file, governance_url=args.governance_url,
        entra_endpoint=args.entra_endpoint, entra_ca_bundle=args.entra_ca_bundle, tenant_id=args.tenant_id,
        tenants=load_spec_from_args(args).federated_identities() if args.spec else {}, client_id=args.client_id,
        subject=args.subject, identity_header_file=args.identity_header_file,
        sidecar_token_file=args.sidecar_token_file)


def run(config: IdentitySidecarConfig) -> int:
    configure_logging()

    def read(path: Path | None) -> str | None:
        try:
            return path.read_text().strip() if path else None
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None

    service = IdentityConfig(governance_url=config.governance_url, entra_endpoint=config.entra_endpoint,
                             tenant_id=config.tenant_id, tenants=dict(config.tenants), client_id=config.client_id,
                             subject=config.subject, entra_ca_bundle=config.entra_ca_bundle,
                             identity_header=read(config.identity_header_file),
                             sidecar_token=read(config.sidecar_token_file))
    serve(build_app(service), config.host, config.port, ready_file=config.ready_file)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("identity", build_parser(), config_from_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
