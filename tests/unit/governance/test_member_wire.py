"""How the CGS stand-in authenticates members on the real wire (sidecars/emulators/cgs/deps.py): COSE Sign1
governance writes with CCF's checks, the member certificate a TLS client presented, `api-version` on /gov,
and the legacy signed header only when allowed. Each test attacks and expects the refusal."""

from __future__ import annotations

import time
from typing import Any

import cbor2
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from sidecars.common import cose
from sidecars.common.ccfwire import GovApiVersionMiddleware, with_api_version
from sidecars.common.cose import sign_gov_message
from sidecars.common.http import create_app
from sidecars.common.memberauth import MemberIdentity
from sidecars.emulators.cgs import db
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.deps import (
    AckAuth,
    BallotAuth,
    CgsConfig,
    CgsState,
    MemberAuth,
    ProposalAuth,
    WithdrawalAuth,
)
from sidecars.emulators.cgs.issuer import OidcIssuer
from sidecars.emulators.cgs.room import ReplayGuard, RoomVerifier
from sidecars.emulators.cgs.store import Store

V = "?api-version=2024-07-01"
PROPOSALS = "/gov/members/proposals:create" + V
BALLOT_VOTE = '{"ballot": "export function vote (proposal, proposerId) { return true }"}'


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> dict[str, MemberIdentity]:
    base = tmp_path_factory.mktemp("people")
    return {name: MemberIdentity.create(base / name, name) for name in ("operator", "alice", "bob", "stranger")}


def _state(database: db.Database, operator: MemberIdentity, config: CgsConfig) -> CgsState:
    store = Store(database)
    store.add_genesis_member(operator.cert_pem)
    issuer = OidcIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "https://cgs/oidc")
    return CgsState(store, AuditLog(database), issuer, operator.cert, config,
                    member_replay=ReplayGuard(config.replay_window_s),
                    rooms=RoomVerifier(store, lambda _evidence: {}, window_s=config.replay_window_s))


def _app(state: CgsState) -> FastAPI:
    """The stand-in's authentication dependencies behind routes at CCF's paths, answering what they admitted."""
    app = create_app("member wire")
    app.state.cgs = state

    def seen(caller: Any) -> dict[str, Any]:
        return {"who": caller.who, "payload": caller.payload.decode() if hasattr(caller, "payload") else None,
                "proposal_id": getattr(caller, "proposal_id", None)}

    @app.post("/gov/members/proposals:create")
    async def propose(caller: ProposalAuth) -> dict[str, Any]:
        return seen(caller)

    @app.post("/gov/members/proposals/{proposal_id}/ballots/{member_id}:submit")
    async def ballot(proposal_id: str, member_id: str, caller: BallotAuth) -> dict[str, Any]:
        return seen(caller)

    @app.post("/gov/members/proposals/{proposal_id}:withdraw")
    async def withdraw(proposal_id: str, caller: WithdrawalAuth) -> dict[str, Any]:
        return seen(caller)

    @app.post("/gov/members/state-digests/{member_id}:ack")
    async def ack(member_id: str, caller: AckAuth) -> dict[str, Any]:
        return seen(caller)

    @app.get("/gov/service/members")
    async def members() -> dict[str, Any]:
        return {"value": []}

    @app.get("/gov/tx")
    async def tx() -> dict[str, Any]:
        return {"status": "Committed"}

    @app.put("/app/contracts/{contract_id}")
    async def put_contract(contract_id: str, caller: MemberAuth) -> dict[str, Any]:
        return {"who": caller.who, "body": caller.json()}

    app.add_middleware(GovApiVersionMiddleware)
    return app


@pytest.fixture
def state(tmp_path, people) -> CgsState:
    state = _state(db.Database(tmp_path / "cgs.db"), people["operator"], CgsConfig())
    for name in ("alice", "bob"):
        state.store.add_member(people[name].member_id, name, people[name].cert_pem)
    return state


def _presenting(app: FastAPI, identity: MemberIdentity | None):
    """The app as a TLS listener hands it a connection whose client presented `identity`'s certificate."""
    async def connection(scope, receive, send):
        if identity is not None:
            scope = {**scope, "extensions": {"tls": {"client_cert_chain": [identity.cert_pem]}}}
        await app(scope, receive, send)
    return connection


async def _post(app, target: str, body: bytes, *, content_type: str = "application/cose",
                present: MemberIdentity | None = None, method: str = "POST",
                headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_presenting(app, present)),
                                 base_url="https://cgs") as client:
        return await client.request(method, target, content=body,
                                    headers={"content-type": content_type, **(headers or {})})


def _signed(identity: MemberIdentity, msg_type: str, payload: bytes = b'{"actions": []}', **kwargs) -> bytes:
    return sign_gov_message(identity.key, identity.cert, msg_type, payload, **kwargs)


# -- COSE governance writes --------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_an_active_member_proposes_with_a_cose_message(state, people):
    answer = await _post(_app(state), PROPOSALS, _signed(people["alice"], "proposal"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"who": people["alice"].member_id, "payload": '{"actions": []}', "proposal_id": None}


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
async def test_a_governance_write_that_is_not_cose_is_refused(state, people, content_type):
    answer = await _post(_app(state), PROPOSALS, _signed(people["alice"], "proposal"), content_type=content_type)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationInfo"


@pytest.mark.anyio
async def test_a_stranger_cannot_propose(state, people):
    answer = await _post(_app(state), PROPOSALS, _signed(people["stranger"], "proposal"))
    assert answer.status_code == 401 and "not a member" in answer.json()["error"]["message"]


@pytest.mark.anyio
async def test_a_message_of_another_type_is_refused(state, people):
    """A ballot (or an ack) someone captured cannot be submitted as a proposal."""
    answer = await _post(_app(state), PROPOSALS, _signed(people["alice"], "ballot", proposal_id="p"))
    assert answer.status_code == 401 and "'proposal'" in answer.json()["error"]["message"]


@pytest.mark.anyio
async def test_an_accepted_member_may_ack_but_not_yet_propose(state, people):
    bob = people["bob"]
    state.store.state.members[bob.member_id]["status"] = "Accepted"
    app = _app(state)
    assert (await _post(app, PROPOSALS, _signed(bob, "proposal"))).status_code == 401
    ack = await _post(app, f"/gov/members/state-digests/{bob.member_id}:ack{V}", _signed(bob, "ack", b"{}"))
    assert ack.status_code == 200, ack.text


@pytest.mark.anyio
async def test_another_member_cannot_ack_for_a_member(state, people):
    answer = await _post(_app(state), f"/gov/members/state-digests/{people['bob'].member_id}:ack{V}",
                         _signed(people["alice"], "ack", b"{}"))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidAuthenticationInfo"
    assert "does not match member ID from body signature" in answer.json()["error"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("age_s", [-3600, 120, 86_400 * 365])
async def test_a_message_created_outside_the_window_is_refused(state, people, age_s):
    stale = _signed(people["alice"], "proposal", created_at=int(time.time()) - age_s)
    answer = await _post(_app(state), PROPOSALS, stale)
    assert answer.status_code == 401 and "created_at" in answer.json()["error"]["message"]


@pytest.mark.anyio
async def test_a_replayed_proposal_is_refused(state, people):
    app, envelope = _app(state), _signed(people["alice"], "proposal")
    assert (await _post(app, PROPOSALS, envelope)).status_code == 200
    again = await _post(app, PROPOSALS, envelope)
    assert again.status_code == 400 and again.json()["error"]["code"] == "ProposalReplay"


@pytest.mark.anyio
async def test_a_replayed_proposal_with_its_signature_malleated_is_refused(state, people):
    """CCF keys replays on the signature's bytes; (r, n - s) also verifies, so a digest of the raw bytes would
    take the capture for a new proposal."""
    app, envelope = _app(state), _signed(people["alice"], "proposal")
    assert (await _post(app, PROPOSALS, envelope)).status_code == 200
    parts = list(cbor2.loads(envelope).value)
    s = int.from_bytes(parts[3][48:], "big")
    parts[3] = parts[3][:48] + (cose._P384_ORDER - s).to_bytes(48, "big")
    again = await _post(app, PROPOSALS, cbor2.dumps(cbor2.CBORTag(18, parts)))
    assert again.status_code == 400 and again.json()["error"]["code"] == "ProposalReplay"


@pytest.mark.anyio
async def test_the_same_proposal_signed_again_is_a_new_proposal_as_in_ccf(state, people):
    app, now = _app(state), int(time.time())
    for _ in range(2):
        assert (await _post(app, PROPOSALS, _signed(people["alice"], "proposal", created_at=now))).status_code == 200


@pytest.mark.anyio
async def test_a_proposal_older_than_the_median_of_recent_ones_is_refused(state, people):
    app, now = _app(state), int(time.time())
    for _ in range(3):
        assert (await _post(app, PROPOSALS, _signed(people["alice"], "proposal", created_at=now))).status_code == 200
    late = await _post(app, PROPOSALS, _signed(people["bob"], "proposal", created_at=now - 10))
    assert late.status_code == 400 and late.json()["error"]["code"] == "ProposalCreatedTooLongAgo"


@pytest.mark.anyio
async def test_a_proposal_is_still_a_replay_after_a_restart(tmp_path, state, people):
    envelope = _signed(people["alice"], "proposal")
    assert (await _post(_app(state), PROPOSALS, envelope)).status_code == 200
    state.store.db.close()
    restarted = _state(db.Database(tmp_path / "cgs.db"), people["operator"], CgsConfig())
    again = await _post(_app(restarted), PROPOSALS, envelope)
    assert again.status_code == 400 and again.json()["error"]["code"] == "ProposalReplay"


@pytest.mark.anyio
async def test_the_recent_proposals_kept_are_bounded(state, people):
    app, now = _app(state), int(time.time())
    for _ in range(state.recent_proposals.WINDOW + 5):
        await _post(app, PROPOSALS, _signed(people["alice"], "proposal", created_at=now))
    kept = state.store.db.conn.execute("SELECT count(*) FROM cose_recent_proposals").fetchone()[0]
    assert kept == state.recent_proposals.WINDOW


@pytest.mark.anyio
async def test_a_ballot_must_sign_the_proposal_it_is_submitted_for(state, people):
    alice, app = people["alice"], _app(state)
    target = f"/gov/members/proposals/p1/ballots/{alice.member_id}:submit{V}"
    ok = await _post(app, target, _signed(alice, "ballot", BALLOT_VOTE.encode(), proposal_id="p1"))
    assert ok.status_code == 200 and ok.json()["proposal_id"] == "p1"
    for other in ({"proposal_id": "p2"}, {}):
        moved = await _post(app, target, _signed(alice, "ballot", BALLOT_VOTE.encode(), **other))
        assert moved.status_code == 400 and moved.json()["error"]["code"] == "InvalidResourceName"


@pytest.mark.anyio
async def test_a_member_cannot_cast_a_ballot_for_another(state, people):
    target = f"/gov/members/proposals/p1/ballots/{people['bob'].member_id}:submit{V}"
    answer = await _post(_app(state), target, _signed(people["alice"], "ballot", b"{}", proposal_id="p1"))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidResourceName"


@pytest.mark.anyio
async def test_a_withdrawal_names_its_proposal(state, people):
    app = _app(state)
    ok = await _post(app, f"/gov/members/proposals/p1:withdraw{V}", _signed(people["alice"], "withdrawal", b"",
                                                                           proposal_id="p1"))
    assert ok.status_code == 200 and ok.json()["payload"] == ""
    other = await _post(app, f"/gov/members/proposals/p2:withdraw{V}", _signed(people["alice"], "withdrawal", b"",
                                                                              proposal_id="p1"))
    assert other.status_code == 400


# -- the legacy header ---------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_the_legacy_signed_header_is_refused_unless_the_stand_in_allows_it(tmp_path, state, people):
    alice, body = people["alice"], b'{"actions": []}'
    headers = {"authorization": alice.authorization("POST", PROPOSALS, body)}
    refused = await _post(_app(state), PROPOSALS, body, content_type="application/json", headers=headers)
    assert refused.status_code == 401
    put = await _post(_app(state), "/app/contracts/c1", b'{"data": 1}', content_type="application/json",
                      method="PUT", headers={"authorization": alice.authorization("PUT", "/app/contracts/c1",
                                                                                  b'{"data": 1}')})
    assert put.status_code == 401
    state.config.allow_signed_header = True
    allowed = await _post(_app(state), PROPOSALS, body, content_type="application/json", headers=headers)
    assert allowed.status_code == 200 and allowed.json()["who"] == alice.member_id


# -- member certificates (mutual TLS) --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_an_app_request_is_the_member_whose_certificate_the_connection_presented(state, people):
    answer = await _post(_app(state), "/app/contracts/c1", b'{"data": 1}', content_type="application/json",
                         method="PUT", present=people["alice"])
    assert answer.status_code == 200 and answer.json() == {"who": people["alice"].member_id, "body": {"data": 1}}


@pytest.mark.anyio
@pytest.mark.parametrize("who", [None, "stranger"])
async def test_an_app_request_without_a_member_certificate_is_refused(state, people, who):
    answer = await _post(_app(state), "/app/contracts/c1", b'{"data": 1}', content_type="application/json",
                         method="PUT", present=people[who] if who else None)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationInfo"


@pytest.mark.anyio
async def test_a_removed_member_certificate_no_longer_authenticates(state, people):
    app, alice = _app(state), people["alice"]
    assert (await _post(app, "/app/contracts/c1", b"{}", method="PUT", present=alice)).status_code == 200
    del state.store.state.members[alice.member_id]
    assert (await _post(app, "/app/contracts/c1", b"{}", method="PUT", present=alice)).status_code == 401
    assert (await _post(app, PROPOSALS, _signed(alice, "proposal"))).status_code == 401


def test_the_listener_trusts_every_member_the_operator_first(state, people):
    assert set(state.client_certificates()) == {people[n].cert_pem for n in ("operator", "alice", "bob")}


# -- api-version -------------------------------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("query, code", [
    ("", "MissingApiVersionParameter"), ("?api-version=2023-06-01-preview", "UnsupportedApiVersionValue"),
    ("?api-version=", "UnsupportedApiVersionValue"), ("?api-version=2024-07-01&api-version=x",
                                                      "UnsupportedApiVersionValue"),
])
async def test_a_gov_request_without_a_supported_api_version_is_refused_first(state, people, query, code):
    """As CCF's api_version_adapter: before authentication, so even an unauthenticated write gets the 400."""
    app = _app(state)
    for method, path in (("GET", "/gov/service/members"), ("POST", "/gov/members/proposals:create")):
        answer = await _post(app, path + query, b"junk", method=method)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["code"] == code and "2024-07-01" in answer.json()["error"]["message"]


@pytest.mark.anyio
async def test_tx_status_and_app_paths_take_no_api_version(state, people):
    app = _app(state)
    assert (await _post(app, "/gov/tx?transaction_id=2.1", b"", method="GET")).status_code == 200
    assert (await _post(app, "/gov/service/members" + V, b"", method="GET")).status_code == 200
    assert (await _post(app, "/app/contracts/c1", b"{}", method="PUT", present=people["alice"])).status_code == 200


@pytest.mark.parametrize("target, expected", [
    ("/gov/service/members", "/gov/service/members?api-version=2024-07-01"),
    ("/gov/members/proposals?x=1", "/gov/members/proposals?x=1&api-version=2024-07-01"),
    ("/gov/members/proposals?api-version=2024-07-01", "/gov/members/proposals?api-version=2024-07-01"),
    ("/gov/tx?transaction_id=2.3", "/gov/tx?transaction_id=2.3"),
    ("/app/contracts/c1", "/app/contracts/c1"), ("/government", "/government"),
])
def test_our_clients_add_the_api_version_where_ccf_wants_it(target, expected):
    assert with_api_version(target) == expected
