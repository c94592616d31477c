"""Invitations and the identities they bind, in the stand-in's database: an invitation names an e-mail address,
a member name and the OIDC issuer (and client id) the invitee signs in with; accepting it binds a certificate
(the invitee's key) to the identity the issuer vouched for (`oid`, `tid`, `email`). Kept apart from the
router (`invitations`) so the store can ask, without importing the API, which identity a certificate is
bound to (a `set_member` proposal may claim only that one)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from . import db

_TABLE = "invitations"
#: an invitation is a link sent by e-mail; unanswered, it lapses
INVITATION_LIFETIME_S = 7 * 24 * 3600
MAX_OPEN_INVITATIONS = 1000


def _ensure(database: db.Database) -> None:
    # once per database: every transaction is a write with a transaction id, which a read must not cost
    if getattr(database, "_invitations_table", False):
        return
    with database.transaction() as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (id TEXT PRIMARY KEY, contract TEXT NOT NULL, "
                     "member_id TEXT, record TEXT NOT NULL)")
    database._invitations_table = True  # type: ignore[attr-defined]


def create(database: db.Database, record: dict[str, Any]) -> dict[str, Any]:
    _ensure(database)
    # the id is the invitation link's secret part: unguessable (128 bits), so only its addressee learns it
    now = int(time.time())
    invitation = {**record, "invitationId": secrets.token_urlsafe(16), "state": "Open", "identity": None,
                  "memberId": None, "createdAt": now, "expiresAt": now + INVITATION_LIFETIME_S}
    with database.transaction() as conn:
        (open_count,) = conn.execute(f"SELECT COUNT(*) FROM {_TABLE} WHERE member_id IS NULL").fetchone()
        if open_count >= MAX_OPEN_INVITATIONS:
            raise OverflowError(f"{open_count} invitations are open")
        conn.execute(f"INSERT INTO {_TABLE} (id, contract, member_id, record) VALUES (?, ?, NULL, ?)",
                     (invitation["invitationId"], invitation["contractId"], json.dumps(invitation)))
    return invitation


def get(database: db.Database, invitation_id: str) -> dict[str, Any] | None:
    _ensure(database)
    with database.lock:
        row = database.conn.execute(f"SELECT record FROM {_TABLE} WHERE id = ?", (invitation_id,)).fetchone()
    return json.loads(row[0]) if row else None


def of_contract(database: db.Database, contract_id: str) -> list[dict[str, Any]]:
    _ensure(database)
    with database.lock:
        rows = database.conn.execute(f"SELECT record FROM {_TABLE} WHERE contract = ? ORDER BY rowid",
                                     (contract_id,)).fetchall()
    return [json.loads(row[0]) for row in rows]


def bind(database: db.Database, invitation_id: str, member_id: str, identity: dict[str, Any],
         cert_pem: str) -> dict[str, Any]:
    """The invitation accepted: `cert_pem` (member `member_id`) bound to `identity`. Only an open invitation
    binds, once (checked again inside the write, so two acceptances racing bind one)."""
    _ensure(database)
    with database.transaction() as conn:
        row = conn.execute(f"SELECT record FROM {_TABLE} WHERE id = ?", (invitation_id,)).fetchone()
        invitation = json.loads(row[0]) if row else None
        if invitation is None or invitation["state"] != "Open":
            raise LookupError("the invitation is not open")
        if conn.execute(f"SELECT 1 FROM {_TABLE} WHERE member_id = ?", (member_id,)).fetchone():
            raise LookupError("this certificate is already bound to an identity")
        invitation.update(state="Accepted", identity=identity, memberId=member_id, certificate=cert_pem,
                          acceptedAt=int(time.time()))
        conn.execute(f"UPDATE {_TABLE} SET member_id = ?, record = ? WHERE id = ?",
                     (member_id, json.dumps(invitation), invitation_id))
    return invitation


def bound_identity(database: db.Database, member_id: str) -> dict[str, Any] | None:
    """The identity an accepted invitation bound to the member's certificate, with the name it was invited as."""
    _ensure(database)
    with database.lock:
        row = database.conn.execute(f"SELECT record FROM {_TABLE} WHERE member_id = ?", (member_id,)).fetchone()
    if row is None:
        return None
    invitation = json.loads(row[0])
    return {"identity": invitation["identity"], "name": invitation["name"], "contractId": invitation["contractId"]}
