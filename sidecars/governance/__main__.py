"""Run the governance sidecar: `ccr sidecar run governance --cgs-endpoint URL --contract-id ID [...]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..common.http import serve
from ..common.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    from ..common.errors import CcrError
    from .roomspec import port_from_env, spec_from_env

    try:
        spec = spec_from_env()
    except CcrError as exc:
        print(f"ccr sidecar run governance: error: {exc}", file=sys.stderr)
        return 1
    governance = spec.contract.governance if spec else None
    parser = argparse.ArgumentParser(prog="ccr sidecar run governance", description="The governance sidecar: "
                                     "consent checks, audit events, secrets, documents, tokens and the room's "
                                     "certificate from CGS, for the app and the other sidecars (port 8300).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port_from_env(8300),
                        help="default $CCR_PORT or 8300; 0 picks a free port")
    parser.add_argument("--cgs-endpoint", default=str(governance.endpoint) if governance else None,
                        required=governance is None,
                        help="the governance service, e.g. https://cgs.example (default: the spec in $CCR_SPEC)")
    parser.add_argument("--contract-id", default=spec.contract.id if spec else None, required=spec is None,
                        help="default: the spec's contract id")
    parser.add_argument("--api-path-prefix", help="CGS path prefix (default app/contracts/CONTRACT_ID)")
    parser.add_argument("--cgs-ca-bundle", default=governance.ca_bundle if governance else None,
                        help="PEM bundle trusted for the CGS endpoint's certificate")
    parser.add_argument("--skr-url", default=os.environ.get("CCR_SKR_URL", "http://127.0.0.1:8284"),
                        help="the skr sidecar (evidence; default $CCR_SKR_URL or http://127.0.0.1:8284)")
    parser.add_argument("--consent-poll-interval", type=float, metavar="SECONDS",
                        default=governance.consent_poll_interval_s if governance else 5.0,
                        help="how often execution consent is re-checked while the room runs (0: never)")
    parser.add_argument("--consent-unverifiable-after", type=float, default=60.0, metavar="SECONDS",
                        help="consent that cannot be confirmed this long counts as revoked (default 60)")
    parser.add_argument("--subscriber-url", default="http://127.0.0.1:8200/consent/revoked",
                        help="POSTed a notice when execution consent is revoked (default: the launcher's "
                             "stop endpoint, http://127.0.0.1:8200/consent/revoked)")
    parser.add_argument("--sidecar-token-file", help="file holding the token sidecars present to audit under "
                                                     "their own scope; other callers then write under scope "
                                                     "'app' (without it, scopes are taken as given)")
    parser.add_argument("--ready-file", help="written once listening: {port, url}")
    args = parser.parse_args(argv)
    configure_logging()

    from .cgs_client import CgsRoomClient
    from .service import GovernanceConfig, build_app

    try:
        token = Path(args.sidecar_token_file).read_text().strip() if args.sidecar_token_file else None
    except OSError as exc:
        print(f"ccr sidecar run governance: error: --sidecar-token-file: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        cgs = CgsRoomClient(args.cgs_endpoint, args.contract_id, skr_url=args.skr_url,
                            ca_bundle=args.cgs_ca_bundle, api_path_prefix=args.api_path_prefix)
    except CcrError as exc:
        print(f"ccr sidecar run governance: error: {exc}", file=sys.stderr)
        return 1
    config = GovernanceConfig(contract_id=args.contract_id, consent_poll_interval_s=args.consent_poll_interval,
                              consent_unverifiable_after_s=args.consent_unverifiable_after,
                              subscriber_url=args.subscriber_url, sidecar_token=token)

    serve(build_app(cgs, config), args.host, args.port, ready_file=args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
