"""`python -m sidecars.emulators.maa`: run the MAA stand-in (HTTPS) until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ...attestation.verify import Trust
from ...common.errors import CcrError
from ...common.http import TlsFiles, serve
from ...common.logs import configure_logging
from ...common.process import write_ready_file
from .app import TokenSigner, create_maa_app

log = logging.getLogger("sidecars.emulators.maa")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecars.emulators.maa",
        description="Microsoft Azure Attestation stand-in: POST /attest/SevSnpVm?api-version=2022-08-01 verifies "
                    "SEV-SNP evidence (AMD's pinned roots; a mock platform only when trusted) and returns an "
                    "RS256 token with MAA's claims; GET /certs and /.well-known/openid-configuration.")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one (default)")
    parser.add_argument("--cert", required=True, metavar="FILE", help="TLS certificate chain (PEM)")
    parser.add_argument("--key", required=True, metavar="FILE", help="TLS private key (PEM)")
    parser.add_argument("--ready-file", metavar="FILE",
                        help='written once listening: {"port": N, "url": "https://HOST:N"}')
    parser.add_argument("--trust-mock-platform", action="append", default=[], metavar="DIR",
                        help="also trust this mock SEV-SNP platform (repeatable; never trusted by default)")
    parser.add_argument("--issuer", metavar="URL",
                        help="the token issuer and jku base (default: https://HOST:PORT as listening)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()

    try:
        trust = Trust.default()
        for directory in args.trust_mock_platform:
            trust = trust.trusting_mock_platform(directory)
        for path in (args.cert, args.key):
            if not Path(path).is_file():
                raise CcrError(f"{path}: no such file")
    except CcrError as exc:
        print(f"maa: error: {exc}", file=sys.stderr)
        return 1
    app = create_maa_app(trust, TokenSigner.generate(), args.issuer)

    def on_ready(port: int) -> None:
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"https://{host}:{port}"
        app.state.issuer = app.state.issuer or url
        log.info("MAA stand-in listening on %s (issuer %s)", url, app.state.issuer)
        if args.ready_file:
            write_ready_file(args.ready_file, port, url)

    serve(app, args.host, args.port, tls=TlsFiles(args.cert, args.key), on_ready=on_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
