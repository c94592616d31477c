"""The CGS stand-in's HTTP API: the member-facing governance endpoints and the room-facing endpoints
under `/app/contracts/{id}/…` with the Azure clean room's envelope.

Room-facing requests are verified as the real CGS does (see `room`); beyond the reference, secrets,
documents, tokens and certificates are released only while execution consent stands. Members authenticate
as on CCF (see `deps`): COSE Sign1 governance writes, member certificates in mutual TLS, `?api-version=` on
/gov. Each API area is a router of its own
module; `deps` holds the state they share and how they authenticate callers.

Most routes say `response_model=None`: they have always answered through `json.dumps`, and a return
annotation alone would make FastAPI write their JSON with pydantic instead, whose bytes can differ.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from ...common.bodylimit import MIB
from ...common.ccfwire import GovApiVersionMiddleware
from ...common.http import create_app
from . import ca, consent, contracts, documents, events, members, node, oidc, secrets, transactions
from .audit import AuditLog
from .deps import CgsConfig, CgsState
from .invitations import router as invitations_router
from .issuer import OidcIssuer
from .room import AttestationVerifier, ReplayGuard, RoomRefused, RoomVerifier
from .store import Store

# CCF's default `max_body_size`: contracts, documents and proposals are kilobytes; a room's envelope carries
# about 30 KB of evidence besides its data. Larger bodies are refused (413) before they reach the state file.
MAX_BODY_BYTES = MIB

# The unit tests import ReplayGuard and RoomRefused from here, where they were defined before the split.
__all__ = ["ReplayGuard", "RoomRefused", "build_app"]


def build_app(store: Store, audit: AuditLog, verify_attestation: AttestationVerifier, issuer: OidcIssuer,
              operator_cert: x509.Certificate, config: CgsConfig) -> FastAPI:
    if audit.db is not store.db:
        # A change and its audit record commit together, and one seqno numbers every write (transaction ids).
        raise ValueError("the CGS stand-in's store and audit log must share one database")
    app = create_app("CGS stand-in", max_body_bytes=MAX_BODY_BYTES)
    transactions.track_commits(store.db)
    app.add_middleware(transactions.TransactionIdMiddleware)
    # The operator is the genesis member, as in CCF: it proposes the others (see `members`).
    store.add_genesis_member(operator_cert.public_bytes(serialization.Encoding.PEM).decode())
    signing_key = store.state.oidc.get("signing_key")
    if signing_key:
        issuer.use_key(signing_key["key"], signing_key["kid"])
    app.state.cgs = CgsState(store, audit, issuer, operator_cert, config,
                             member_replay=ReplayGuard(config.replay_window_s),
                             rooms=RoomVerifier(store, verify_attestation, window_s=config.replay_window_s))
    app.include_router(invitations_router)
    for area in (members, contracts, consent, secrets, documents, ca, events, oidc, node, transactions):
        app.include_router(area.router)
    app.add_middleware(GovApiVersionMiddleware)
    return app
