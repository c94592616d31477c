"""Run the Entra token stand-in: `python -m sidecars.emulators.entra --cert F --key F [...]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ...common.http import TlsFiles, serve
from ...common.logs import configure_logging
from ...common.process import write_ready_file
from .app import CredentialSource, FederatedCredential, IssuerKeys, TokenIssuer, build_app
from .signin import UserSource


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccr-entra", description="Local stand-in for the Microsoft Entra "
                                     "token endpoint (client credentials with a federated client assertion).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cert", required=True, help="TLS certificate chain (PEM)")
    parser.add_argument("--key", required=True, help="TLS private key (PEM)")
    parser.add_argument("--ready-file", help="written once listening: {port, url}")
    parser.add_argument("--state-dir", help="keeps the token signing key across restarts and publishes its "
                                            "JWKS as STATE_DIR/jwks.json")
    parser.add_argument("--federated-credential", action="append", default=[],
                        metavar="CLIENT_ID,ISSUER,SUBJECT[,AUDIENCE]",
                        help="trust assertions from ISSUER about SUBJECT for CLIENT_ID (repeatable)")
    parser.add_argument("--credentials-file", metavar="FILE",
                        help="JSON list of {clientId, issuer, subject, audiences}, re-read when it changes "
                             "(default STATE_DIR/federated-credentials.json)")
    parser.add_argument("--ca-bundle", help="CA bundle to verify issuers' HTTPS endpoints (the local CA)")
    parser.add_argument("--user", action="append", default=[], metavar="EMAIL:PASSWORD",
                        help="a person who can sign in (authorization code + PKCE; repeatable)")
    parser.add_argument("--users-file", metavar="FILE",
                        help="JSON list of {email, password, name}, re-read when it changes (default "
                             "STATE_DIR/users.json)")
    parser.add_argument("--token-lifetime", type=int, default=3600, metavar="SECONDS")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        fixed = [FederatedCredential.parse(text) for text in args.federated_credential]
    except ValueError as exc:
        print(f"ccr-entra: error: --federated-credential {exc}", file=sys.stderr)
        return 1
    try:
        people = [UserSource.parse(text) for text in args.user]
    except ValueError as exc:
        print(f"ccr-entra: error: --user {exc}", file=sys.stderr)
        return 1
    users_file = args.users_file or (str(Path(args.state_dir) / "users.json") if args.state_dir else None)
    key_path = Path(args.state_dir) / "token-signing.key" if args.state_dir else None
    if key_path is not None and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if key_path is not None:
            key_path.parent.mkdir(parents=True, exist_ok=True)
            key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            key_path.chmod(0o600)
    tokens = TokenIssuer(key, args.token_lifetime)
    if args.state_dir:
        # Services that trust Entra v1 tokens (iss https://sts.windows.net/<tenant>/ is not fetchable
        # locally) read the signing keys from here, e.g. the Key Vault stand-in's --trust-issuer-jwks.
        (Path(args.state_dir) / "jwks.json").write_text(json.dumps(tokens.jwks(), indent=1))
    credentials_file = args.credentials_file or (
        str(Path(args.state_dir) / "federated-credentials.json") if args.state_dir else None)
    base_url = {"url": ""}
    app = build_app(CredentialSource(fixed, Path(credentials_file) if credentials_file else None),
                    IssuerKeys(args.ca_bundle), tokens, base_url,
                    UserSource(people, Path(users_file) if users_file else None))

    def on_ready(bound: int) -> None:
        base_url["url"] = f"https://{args.host}:{bound}"
        if args.ready_file:
            write_ready_file(args.ready_file, bound, base_url["url"])

    serve(app, args.host, args.port, tls=TlsFiles(args.cert, args.key), on_ready=on_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
