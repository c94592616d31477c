"""The CGS stand-in's routers: every area's routes are mounted, and callers are refused before their requests
are read (a member's signature before its body, a room's attestation before the rest of its envelope)."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from sidecars.common.memberauth import MemberIdentity
from sidecars.emulators.cgs import (
    ca,
    consent,
    contracts,
    db,
    documents,
    events,
    invitations,
    members,
    node,
    oidc,
    secrets,
    transactions,
)
from sidecars.emulators.cgs.app import build_app
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.deps import CgsConfig
from sidecars.emulators.cgs.issuer import OidcIssuer
from sidecars.emulators.cgs.store import Store

AREAS = (members, contracts, consent, secrets, documents, ca, events, oidc, node, transactions,
         invitations)


def _no_evidence(_attestation: dict) -> dict:
    raise AssertionError("no test here gets as far as verifying evidence")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def app(tmp_path) -> FastAPI:
    operator = MemberIdentity.create(tmp_path / "operator", "operator")
    shared = db.Database(tmp_path / "cgs.db")
    store = Store(shared)
    store.put_contract("c1", {}, None)
    issuer = OidcIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "https://cgs/oidc")
    return build_app(store, AuditLog(shared), _no_evidence, issuer, operator.cert,
                     CgsConfig(allow_signed_header=True))


def _routes(routes) -> set[tuple[str, str]]:
    return {(context.path, method) for context in iter_route_contexts(routes) for method in context.methods or ()}


def test_every_area_router_is_mounted(app):
    mounted = _routes(app.routes)
    for area in AREAS:
        assert _routes(area.router.routes) and _routes(area.router.routes) <= mounted, area.__name__
    assert mounted == set().union(*(_routes(area.router.routes) for area in AREAS))


async def _call(app: FastAPI, method: str, path: str, body: bytes = b"") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://cgs") as client:
        return await client.request(method, path, content=body)


@pytest.mark.anyio
@pytest.mark.parametrize("method, path", [
    ("POST", "/gov/members/proposals:create?api-version=2024-07-01"),
    ("POST", "/gov/members/proposals/p1/ballots/m1:submit?api-version=2024-07-01"),
    ("POST", "/gov/members/state-digests/m1:ack?api-version=2024-07-01"), ("PUT", "/app/contracts/c1"),
    ("PUT", "/app/contracts/c1/secrets/s"), ("PUT", "/app/memberdocuments/d1"),
    ("POST", "/app/contracts/c1/runtimeoptions/execution/enable"),
])
async def test_unsigned_member_request_is_refused_before_its_body_is_read(app, method, path):
    answer = await _call(app, method, path, b"not json")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationInfo"


@pytest.mark.anyio
async def test_a_malformed_events_query_is_refused_only_after_the_member_is_authenticated(app, tmp_path):
    assert (await _call(app, "GET", "/app/contracts/c1/events?from_seqno=abc")).status_code == 401
    member = MemberIdentity.create(tmp_path / "m", "m")
    app.state.cgs.store.add_member(member.member_id, "m", member.cert_pem)
    target = "/app/contracts/c1/events?from_seqno=abc"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://cgs") as client:
        answer = await client.get(target, headers={"authorization": member.authorization("GET", target, b"")})
    assert answer.status_code == 400 and "query.from_seqno" in answer.json()["error"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("method, path", [
    ("POST", "/app/contracts/c1/secrets/s"),
    ("POST", "/app/contracts/c1/memberdocuments/accepted/d1"), ("POST", "/app/contracts/c1/oauth/token"),
    ("POST", "/app/contracts/c1/ca/generateEndorsedCert"), ("PUT", "/app/contracts/c1/events"),
    ("POST", "/app/contracts/c1/runtimeoptions/logging/status"),
])
async def test_a_room_without_attestation_is_refused_first(app, method, path):
    answer = await _call(app, method, path, b'{"encrypt": "ignored", "sign": "ignored"}')
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "AttestationMissing"


@pytest.mark.anyio
@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/app/contracts/c1/secrets/s", b'{"value": "v"}'),
    ("POST", "/app/contracts/c1/runtimeoptions/execution/disable", b""),
    ("PUT", "/app/contracts/c2", b'{"data": {"x": 1}}'),
])
async def test_a_change_whose_audit_record_cannot_be_written_does_not_happen(tmp_path, monkeypatch, method, path,
                                                                              body):
    """A member's change and the audit record naming who made it commit together: when the record cannot be
    written (a full disk, say), the change is refused and is neither served nor in the database."""
    shared = db.Database(tmp_path / "cgs.db")
    store = Store(shared)
    store.put_contract("c1", {}, None)
    member = MemberIdentity.create(tmp_path / "m", "m")
    store.add_member(member.member_id, "m", member.cert_pem)
    proposal = store.create_proposal(member.member_id, [{"name": "set_contract", "args": {
        "contractId": "c1", "contract": store.contract_view("c1")}}])
    store.vote(proposal["proposalId"], member.member_id, True)
    assert store.is_accepted("c1")
    before = json.dumps(store.state.__dict__, sort_keys=True)
    issuer = OidcIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "https://cgs/oidc")
    app = build_app(store, AuditLog(shared), _no_evidence, issuer, member.cert, CgsConfig(allow_signed_header=True))

    def disk_full(*_args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(db, "insert_events", disk_full)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="https://cgs") as client:
        answer = await client.request(method, path, content=body, headers={
            "authorization": member.authorization(method, path, body), "content-type": "application/json"})
    assert answer.status_code >= 500
    assert json.dumps(store.state.__dict__, sort_keys=True) == before
    monkeypatch.undo()
    assert json.dumps(Store(tmp_path / "cgs.db").state.__dict__, sort_keys=True) == before
