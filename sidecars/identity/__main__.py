"""Run the identity sidecar: `ccr sidecar run identity --entra-endpoint URL --tenant-id T [...]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..common.http import serve
from ..common.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    from ..common.errors import CcrError
    from ..governance.roomspec import identity_tenants, port_from_env, spec_from_env

    try:
        tenants = identity_tenants(spec_from_env())
    except CcrError as exc:
        print(f"ccr sidecar run identity: error: {exc}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog="ccr sidecar run identity", description="IMDS-compatible managed identity "
                                     "endpoint (port 8290) backed by CGS-issued federated client assertions.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port_from_env(8290),
                        help="default $CCR_PORT or 8290; 0 picks a free port")
    parser.add_argument("--governance-url", default=os.environ.get("CCR_GOVERNANCE_URL", "http://127.0.0.1:8300"))
    parser.add_argument("--entra-endpoint", default=os.environ.get("CCR_ENTRA_ENDPOINT",
                                                                   "https://login.microsoftonline.com"),
                        help="the Entra authority (default $CCR_ENTRA_ENDPOINT or https://login.microsoftonline.com)")
    parser.add_argument("--entra-ca-bundle", help="PEM bundle trusted for the Entra endpoint (local CA)")
    parser.add_argument("--tenant-id", default=os.environ.get("CCR_TENANT_ID"),
                        help="tenant of identities the spec does not name (default $CCR_TENANT_ID)")
    parser.add_argument("--client-id", help="the identity used when a request names none")
    parser.add_argument("--subject", help="the assertion's sub (default: the contract id)")
    parser.add_argument("--identity-header-file", help="file holding the secret for the IDENTITY_HEADER shape")
    parser.add_argument("--sidecar-token-file", help="token for auditing under scope 'identity'")
    parser.add_argument("--ready-file", help="written once listening: {port, url}")
    args = parser.parse_args(argv)
    configure_logging()
    from .service import IdentityConfig, build_app

    def read(path: str | None) -> str | None:
        return Path(path).read_text().strip() if path else None

    try:
        config = IdentityConfig(governance_url=args.governance_url, entra_endpoint=args.entra_endpoint,
                                tenant_id=args.tenant_id, tenants=tenants, client_id=args.client_id,
                                subject=args.subject,
                                entra_ca_bundle=args.entra_ca_bundle,
                                identity_header=read(args.identity_header_file),
                                sidecar_token=read(args.sidecar_token_file))
    except OSError as exc:
        print(f"ccr sidecar run identity: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1

    serve(build_app(config), args.host, args.port, ready_file=args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
