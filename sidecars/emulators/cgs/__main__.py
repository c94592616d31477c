"""Run the CGS stand-in: `python -m sidecars.emulators.cgs --cert F --key F --state-dir DIR [...]`.

The state directory keeps the database (`cgs.db`: the governance state and the audit log, see `db`), the
OIDC issuer key and the network operator's identity (`operator/`), which registers members
(`ccr governance member register`), as CCF's initial operator does. One stand-in at a time uses a state
directory (it holds `cgs.lock`): a second would serve from a memory the first does not see.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import sqlite3
import sys
from pathlib import Path

from ...common.errors import CcrError
from ...common.http import TlsFiles, serve
from ...common.logs import configure_logging
from ...common.memberauth import MemberIdentity
from ...common.process import write_ready_file
from . import db
from .app import build_app
from .audit import AuditLog
from .deps import CgsConfig
from .issuer import OidcIssuer
from .store import NESTING, Store
from .verifier import attestation_verifier

log = logging.getLogger("ccr.cgs")


def _lock_state_dir(state_dir: Path) -> int:
    """Held until the process ends (the kernel drops it even on kill -9, so a restart is never blocked)."""
    fd = os.open(state_dir / "cgs.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CcrError(f"another CGS stand-in is using the state directory {state_dir}") from None
    return fd


def _open_database(state_dir: Path) -> Path:
    path = state_dir / db.DATABASE
    conn = db.connect(path)
    try:
        for what in db.import_legacy(state_dir, conn, NESTING):
            log.info("imported %s from an older state directory", what)
    finally:
        conn.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ccr-cgs", description="Local stand-in for the clean room governance "
                                     "service (CGS), speaking the Azure clean room's CGS API over HTTPS.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cert", required=True, help="TLS certificate chain (PEM)")
    parser.add_argument("--key", required=True, help="TLS private key (PEM)")
    parser.add_argument("--ready-file", help="written once listening: {port, url}")
    parser.add_argument("--state-dir", required=True, help="where state, audit log and keys are kept")
    parser.add_argument("--trust-mock-platform", metavar="DIR",
                        help="also trust the mock SEV-SNP platform in DIR (local rooms only)")
    parser.add_argument("--public-url", help="the URL clients use (default https://HOST:PORT); the OIDC "
                                             "issuer is PUBLIC_URL/oidc")
    parser.add_argument("--replay-window", type=float, default=60.0, metavar="SECONDS",
                        help="signed member messages (a COSE message's ccf.gov.msg.created_at, the legacy "
                             "header's ts) and room requests are accepted only this close to their time "
                             "(default 60)")
    parser.add_argument("--allow-signed-header", action="store_true",
                        help="also accept the legacy `Authorization: CCR-Member` signed header from members "
                             "(`ccr governance --member-auth header`); a real CGS accepts only COSE Sign1 "
                             "governance writes and member certificates in mutual TLS")
    parser.add_argument("--ca-bundle", metavar="PEM",
                        help="CA bundle for the HTTPS of the OIDC issuers invitations name (the local CA)")
    args = parser.parse_args(argv)
    configure_logging()


    try:
        state_dir = Path(args.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        _lock_state_dir(state_dir)
        database = _open_database(state_dir)
        operator_dir = state_dir / "operator"
        operator = (MemberIdentity.load(operator_dir) if (operator_dir / "member.key").exists()
                    else MemberIdentity.create(operator_dir, "operator"))
        # With port 0 the issuer URL is known only once bound: set in on_ready, before the ready file
        # tells anyone where to connect.
        # No signing key until the members enable the issuer and a member asks for one (see `oidc`).
        issuer = OidcIssuer(None, (args.public_url or "").rstrip("/") + "/oidc")
        shared = db.Database(database)  # one connection: a change and its audit record commit together
        app = build_app(Store(shared), AuditLog(shared),
                        attestation_verifier(args.trust_mock_platform), issuer, operator.cert,
                        CgsConfig(replay_window_s=args.replay_window,
                                  allow_signed_header=args.allow_signed_header, ca_bundle=args.ca_bundle))
    except CcrError as exc:
        print(f"ccr-cgs: error: {exc}", file=sys.stderr)
        return 1
    except (sqlite3.Error, ValueError, KeyError) as exc:
        print(f"ccr-cgs: error: cannot open the state in {args.state_dir}: {exc}", file=sys.stderr)
        return 1

    def on_ready(bound: int) -> None:
        if not args.public_url:
            issuer.issuer = f"https://{args.host}:{bound}/oidc"
        if args.ready_file:
            write_ready_file(args.ready_file, bound, f"https://{args.host}:{bound}")

    # The listener asks every client for a certificate (optional: rooms and /gov readers present none) and
    # lets members present theirs; the routes decide what a presented certificate may do.
    serve(app, args.host, args.port, tls=TlsFiles(args.cert, args.key), on_ready=on_ready,
          client_certs=app.state.cgs.client_certificates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
