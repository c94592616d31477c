"""`ccr sidecar run governance` / `python -m sidecars.governance`: the governance sidecar.

In a room it is configured from the room (`sidecar.configure`); these options configure it standalone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cliargs import add_listen_options, run_standalone
from ..common.http import serve
from ..common.logs import configure_logging
from ..common.room import read_sidecar_token
from .cgs_client import CgsRoomClient
from .service import GovernanceConfig, build_app
from .sidecar import GOVERNANCE, GovernanceSidecarConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccr sidecar run governance", description="The governance sidecar: "
                                     "consent checks, audit events, secrets, documents, tokens and the room's "
                                     "certificate from CGS, for the app and the other sidecars.")
    add_listen_options(parser, GOVERNANCE.port())
    parser.add_argument("--cgs-endpoint", required=True, help="the governance service, e.g. https://cgs.example")
    parser.add_argument("--contract-id", required=True)
    parser.add_argument("--api-path-prefix", help="CGS path prefix (default app/contracts/CONTRACT_ID)")
    parser.add_argument("--cgs-ca-bundle", help="PEM bundle trusted for the CGS endpoint's certificate")
    parser.add_argument("--skr-url", required=True, help="the skr sidecar (evidence)")
    parser.add_argument("--consent-poll-interval", type=float, default=5.0, metavar="SECONDS",
                        help="how often execution consent is re-checked while the room runs (0: never)")
    parser.add_argument("--consent-unverifiable-after", type=float, default=60.0, metavar="SECONDS",
                        help="consent that cannot be confirmed this long counts as revoked (default 60)")
    parser.add_argument("--subscriber-url", help="POSTed a notice when execution consent is revoked (in a room: "
                                                 "the launcher's stop endpoint)")
    parser.add_argument("--sidecar-token-file", type=Path,
                        help="file holding the token sidecars present to audit under their own scope; other "
                             "callers then write under scope 'app' (without it, scopes are taken as given)")
    return parser


def config_from_args(args: argparse.Namespace) -> GovernanceSidecarConfig:
    return GovernanceSidecarConfig(
        port=args.port, host=args.host, ready_file=args.ready_file, cgs_endpoint=args.cgs_endpoint,
        contract_id=args.contract_id, api_path_prefix=args.api_path_prefix, cgs_ca_bundle=args.cgs_ca_bundle,
        skr_url=args.skr_url, consent_poll_interval_s=args.consent_poll_interval,
        consent_unverifiable_after_s=args.consent_unverifiable_after, subscriber_url=args.subscriber_url,
        sidecar_token_file=args.sidecar_token_file)


def run(config: GovernanceSidecarConfig) -> int:
    configure_logging()

    token = read_sidecar_token(config.sidecar_token_file)
    cgs = CgsRoomClient(config.cgs_endpoint, config.contract_id, skr_url=config.skr_url,
                        ca_bundle=config.cgs_ca_bundle, api_path_prefix=config.api_path_prefix)
    service = GovernanceConfig(contract_id=config.contract_id, consent_poll_interval_s=config.consent_poll_interval_s,
                               consent_unverifiable_after_s=config.consent_unverifiable_after_s,
                               subscriber_url=config.subscriber_url, sidecar_token=token,
                               sidecar_only_secrets=config.sidecar_only_secrets)
    serve(build_app(cgs, service), config.host, config.port, ready_file=config.ready_file)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("governance", build_parser(), config_from_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
