"""`python -m sidecars.emulators.keyvault`: the Key Vault / managed HSM stand-in (HTTPS)."""

from __future__ import annotations

import argparse
import sys

from ...common.devtokens import DEV_TENANT_ID, dev_issuer
from ...common.errors import CcrError, ConfigError
from ...common.http import TlsFiles, serve
from ...common.logs import configure_logging
from .access import EntraService, TrustedIssuer
from .app import build_app
from .signer import ResponseSigner


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecars.emulators.keyvault",
        description="Azure Key Vault / managed HSM stand-in: keys with release policies and secure key "
                    "release, secrets, bearer-token authentication. HTTPS only, state in memory.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see --ready-file)")
    parser.add_argument("--cert", required=True, help="TLS certificate chain (PEM); also signs release responses")
    parser.add_argument("--key", required=True, help="TLS private key (PEM)")
    parser.add_argument("--ready-file", help='written once listening: {"port": N, "url": "https://HOST:N"}')
    parser.add_argument("--ca-file", help="CA bundle for fetching attestation authorities' and issuers' keys")
    parser.add_argument("--trust-issuer", action="append", default=[], metavar="ISSUER",
                        help="accept access tokens from ISSUER, keys found via ISSUER/.well-known/"
                             "openid-configuration (repeatable; e.g. the Entra stand-in)")
    parser.add_argument("--trust-issuer-jwks", action="append", default=[], metavar="ISSUER=FILE",
                        help="accept access tokens from ISSUER signed by a key in the JWKS FILE (repeatable)")
    parser.add_argument("--trust-entra", action="append", default=[], metavar="URL",
                        help="accept access tokens of any tenant from the Entra-shaped token service at URL "
                             "(the Entra stand-in), keys from URL/{tenant}/discovery/v2.0/keys (repeatable)")
    parser.add_argument("--trust-dev-tokens", metavar="JWKS_FILE",
                        help="accept the emulation's dev tokens (issuer https://sts.windows.net/<dev tenant>/) "
                             "signed by a key in JWKS_FILE")
    parser.add_argument("--challenge-authority", default=None,
                        help="authorization URL in the 401 challenge (default: the dev tenant on "
                             "login.microsoftonline.com)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()

    try:
        issuers = [TrustedIssuer(url) for url in args.trust_issuer]
        for item in args.trust_issuer_jwks:
            issuer, sep, path = item.rpartition("=")
            if not sep or not issuer:
                raise ConfigError(f"--trust-issuer-jwks {item!r}: expected ISSUER=FILE")
            issuers.append(TrustedIssuer.from_jwks_file(issuer, path))
        if args.trust_dev_tokens:
            issuers.append(TrustedIssuer.from_jwks_file(dev_issuer(), args.trust_dev_tokens))
        entra = [EntraService(url) for url in args.trust_entra]
        if not issuers and not entra:
            raise ConfigError("no token issuer is trusted: give --trust-dev-tokens, --trust-entra, --trust-issuer "
                              "or --trust-issuer-jwks")
        authority = args.challenge_authority or f"https://login.microsoftonline.com/{DEV_TENANT_ID}"
        app = build_app(issuers=issuers, challenge_authority=authority,
                        signer=ResponseSigner(args.cert, args.key), ca_file=args.ca_file, entra=entra)
    except CcrError as exc:
        print(f"keyvault: error: {exc}", file=sys.stderr)
        return 1

    serve(app, args.host, args.port, tls=TlsFiles(args.cert, args.key), ready_file=args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
