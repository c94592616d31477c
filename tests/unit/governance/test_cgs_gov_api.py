"""The CGS stand-in's governance API over HTTP, as CCF (2024-07-01) and CGS shape it, and the ways a member
could try to get around it: voting for someone else, voting before being active, a ballot that is not one of
the two standard ones, withdrawing another's proposal, a key the members never enabled."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sidecars.common.ccfwire import with_api_version
from sidecars.common.cose import sign_gov_message
from sidecars.common.memberauth import MemberIdentity
from sidecars.emulators.cgs.app import build_app
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.deps import CgsConfig
from sidecars.emulators.cgs.issuer import OidcIssuer
from sidecars.emulators.cgs.store import Store
from sidecars.governance.member_client import BALLOT_ACCEPT, BALLOT_REJECT


def _no_evidence(_attestation: dict) -> dict:
    raise AssertionError("no test here verifies evidence")


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Gov:
    """The stand-in in process, and members that write to it (governance writes signed as the stand-in takes
    them) and read from it."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.operator = MemberIdentity.create(tmp_path / "operator", "operator")
        self.store = Store(tmp_path / "cgs.db")
        self.app: FastAPI = build_app(self.store, AuditLog(self.store.db), _no_evidence,
                                      OidcIssuer(None, "https://cgs/oidc"), self.operator.cert, CgsConfig())

    async def call(self, method: str, target: str, body: Any = None, *, who: MemberIdentity | None = None,
                   ) -> httpx.Response:
        """A JSON request over a connection on which `who` presented its certificate (CGS's `member_cert`)."""
        content = b"" if body is None else json.dumps(body).encode()
        return await self._send(method, with_api_version(target), content, "application/json", who)

    async def write(self, who: MemberIdentity, target: str, msg_type: str, payload: Any,
                    proposal_id: str | None = None) -> httpx.Response:
        """A governance write: `payload` in a COSE Sign1 message `who` signed."""
        content = b"" if payload is None else json.dumps(payload).encode()
        envelope = sign_gov_message(who.key, who.cert, msg_type, content, proposal_id=proposal_id)
        return await self._send("POST", with_api_version(target), envelope, "application/cose", None)

    async def _send(self, method: str, target: str, content: bytes, content_type: str,
                    who: MemberIdentity | None) -> httpx.Response:
        async def connection(scope, receive, send):
            if who is not None:
                scope = {**scope, "extensions": {"tls": {"client_cert_chain": [who.cert_pem]}}}
            await self.app(scope, receive, send)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=connection), base_url="https://cgs") as client:
            return await client.request(method, target, content=content, headers={"content-type": content_type})

    async def propose(self, who: MemberIdentity, *actions: dict[str, Any]) -> dict[str, Any]:
        answer = await self.write(who, "/gov/members/proposals:create", "proposal", {"actions": list(actions)})
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def pass_(self, who: MemberIdentity, *actions: dict[str, Any]) -> dict[str, Any]:
        """Proposed by `who`, the only active member, who votes for it."""
        proposal = await self.propose(who, *actions)
        if proposal["proposalState"] == "Open":
            proposal = (await self.vote(who, proposal["proposalId"])).json()
        assert proposal["proposalState"] == "Accepted", proposal
        return proposal

    async def vote(self, who: MemberIdentity, proposal_id: str, ballot: Any = BALLOT_ACCEPT, *,
                   as_member: str | None = None) -> httpx.Response:
        return await self.write(who, f"/gov/members/proposals/{proposal_id}/ballots/{as_member or who.member_id}"
                                     ":submit", "ballot", {"ballot": ballot}, proposal_id)

    async def update(self, who: MemberIdentity, member_id: str | None = None) -> httpx.Response:
        return await self.write(who, f"/gov/members/state-digests/{member_id or who.member_id}:update",
                                "state_digest", None)

    async def ack(self, who: MemberIdentity, digest: Any, member_id: str | None = None) -> httpx.Response:
        return await self.write(who, f"/gov/members/state-digests/{member_id or who.member_id}:ack", "ack", digest)

    async def join(self, name: str) -> MemberIdentity:
        """A member as CCF adds one: the operator proposes, the active members accept, the member acknowledges."""
        member = MemberIdentity.create(self.tmp_path / name, name)
        proposal = await self.propose(self.operator, {"name": "set_member", "args": {
            "cert": member.cert_pem, "member_data": {"identifier": name}}})
        for mid, info in list(self.store.state.members.items()):
            if proposal["proposalState"] == "Open" and info["status"] == "Active" and mid != self.operator.member_id:
                voter = MemberIdentity.load(self.tmp_path / info["name"])
                proposal = (await self.vote(voter, proposal["proposalId"])).json()
        assert proposal["proposalState"] == "Accepted"
        digest = await self.update(member)
        assert (await self.ack(member, digest.json())).status_code == 204
        return member


@pytest.fixture
def gov(tmp_path) -> Gov:
    return Gov(tmp_path)


@pytest.mark.anyio
async def test_governance_reads_need_no_credentials_and_have_ccf_shapes(gov):
    alice = await gov.join("alice")
    members = (await gov.call("GET", "/gov/service/members")).json()["value"]
    by_id = {m["memberId"]: m for m in members}
    assert by_id[alice.member_id] == {"memberId": alice.member_id, "status": "Active", "certificate": alice.cert_pem,
                                      "memberData": {"identifier": "alice"}}
    assert by_id[gov.operator.member_id]["memberData"] == {"identifier": "operator", "isOperator": True}
    assert (await gov.call("GET", f"/gov/service/members/{alice.member_id}")).json() == by_id[alice.member_id]
    proposals = (await gov.call("GET", "/gov/members/proposals")).json()["value"]
    assert [p["proposalState"] for p in proposals] == ["Accepted"]
    assert set(proposals[0]) == {"proposalId", "proposerId", "proposalState", "ballotCount", "finalVotes"}
    actions = (await gov.call("GET", f"/gov/members/proposals/{proposals[0]['proposalId']}/actions")).json()
    assert actions == {"actions": [{"name": "set_member", "args": {"cert": alice.cert_pem,
                                                                    "member_data": {"identifier": "alice"}}}]}


@pytest.mark.anyio
async def test_only_the_two_standard_ballots_are_taken(gov):
    alice, bob = await gov.join("alice"), await gov.join("bob")
    assert (await gov.call("PUT", "/app/contracts/c1", {"data": {"x": 1}}, who=alice)).status_code == 200
    contract = (await gov.call("POST", "/app/contracts/c1", who=alice)).json()
    proposal = await gov.propose(alice, {"name": "set_contract", "args": {"contractId": "c1", "contract": contract}})
    for ballot in ("export function vote (proposal, proposerId) { return true; }",
                   "export function vote (p, id) { ccf.kv['public:ccf.gov.members.info'].clear(); return true }",
                   "accept", True, None):
        refused = await gov.vote(bob, proposal["proposalId"], ballot)
        assert refused.status_code == 400 and "two standard ballots" in refused.json()["error"]["message"]
    assert (await gov.vote(bob, proposal["proposalId"], BALLOT_REJECT)).json()["proposalState"] == "Rejected"


@pytest.mark.anyio
async def test_a_member_votes_only_for_itself_and_only_once_active(gov):
    alice, bob = await gov.join("alice"), await gov.join("bob")
    carol = MemberIdentity.create(gov.tmp_path / "carol", "carol")
    joining = await gov.propose(gov.operator, {"name": "set_member", "args": {"cert": carol.cert_pem,
                                                                               "member_data": {"identifier": "carol"}}})
    # alice signs a ballot in bob's name
    forged = await gov.vote(alice, joining["proposalId"], as_member=bob.member_id)
    assert forged.status_code in (400, 403)
    assert gov.store.proposal(joining["proposalId"])["ballots"] == {}
    assert (await gov.vote(alice, joining["proposalId"])).json()["proposalState"] == "Open"
    assert (await gov.vote(bob, joining["proposalId"])).json()["proposalState"] == "Accepted"
    # carol is accepted, not active: she may acknowledge but not yet propose or vote
    refused = await gov.write(carol, "/gov/members/proposals:create", "proposal",
                              {"actions": [{"name": "enable_oidc_issuer", "args": {"kid": "k"}}]})
    assert refused.status_code in (401, 403)
    forged_ack = await gov.ack(carol, {"stateDigest": "0" * 64})
    assert forged_ack.status_code == 400
    # nor acknowledge for someone else
    digest = await gov.update(carol)
    assert (await gov.ack(alice, digest.json(), member_id=carol.member_id)).status_code in (400, 403)
    assert gov.store.state.members[carol.member_id]["status"] == "Accepted"


@pytest.mark.anyio
async def test_only_the_proposer_withdraws(gov):
    alice, bob = await gov.join("alice"), await gov.join("bob")
    proposal = await gov.propose(alice, {"name": "enable_oidc_issuer", "args": {"kid": "k"}})
    target = f"/gov/members/proposals/{proposal['proposalId']}:withdraw"
    assert (await gov.write(bob, target, "withdrawal", None, proposal["proposalId"])).status_code == 403
    withdrawn = await gov.write(alice, target, "withdrawal", None, proposal["proposalId"])
    assert withdrawn.status_code == 200 and withdrawn.json()["proposalState"] == "Withdrawn"
    assert (await gov.vote(bob, proposal["proposalId"])).status_code == 400


@pytest.mark.anyio
async def test_ca_and_oidc_keys_exist_only_once_the_members_enabled_them(gov):
    alice = await gov.join("alice")
    assert (await gov.call("PUT", "/app/contracts/c1", {"data": {"x": 1}}, who=alice)).status_code == 200
    contract = (await gov.call("POST", "/app/contracts/c1", who=alice)).json()
    await gov.pass_(alice, {"name": "set_contract", "args": {"contractId": "c1", "contract": contract}})
    premature = await gov.call("POST", "/app/contracts/c1/ca/generateSigningKey", who=alice)
    assert premature.status_code == 405 and premature.json()["error"]["code"] == "CANotEnabled"
    assert (await gov.call("GET", "/oidc/keys")).status_code == 405
    assert (await gov.call("POST", "/app/oidc/generateSigningKey", who=alice)).status_code == 405

    await gov.pass_(alice, {"name": "enable_ca", "args": {"contractId": "c1"}})
    status = (await gov.call("POST", "/app/contracts/c1/ca/status", who=alice)).json()
    assert status == {"enabled": True, "proposalIds": []}  # enabled, no key until a member asks
    first = await gov.call("POST", "/app/contracts/c1/ca/generateSigningKey", who=alice)
    assert first.json() == {"requestId": "1"}
    cert = (await gov.call("POST", "/app/contracts/c1/ca/status", who=alice)).json()["caCert"]
    await gov.call("POST", "/app/contracts/c1/ca/generateSigningKey", who=alice)
    assert (await gov.call("POST", "/app/contracts/c1/ca/status", who=alice)).json()["caCert"] == cert  # same key

    await gov.pass_(alice, {"name": "enable_oidc_issuer", "args": {"kid": "issuer"}})
    assert (await gov.call("POST", "/app/oidc/issuerInfo", who=alice)).json()["enabled"] is True
    key = (await gov.call("POST", "/app/oidc/generateSigningKey", who=alice)).json()
    assert key == {"reqId": "1", "kid": "issuer-1"}
    jwks = (await gov.call("GET", "/oidc/keys")).json()
    assert [k["kid"] for k in jwks["keys"]] == ["issuer-1"]
    # a restarted stand-in serves the same key
    reopened = Store(gov.store.path)
    again = build_app(reopened, AuditLog(reopened.db), _no_evidence,
                      OidcIssuer(None, "https://cgs/oidc"), gov.operator.cert, CgsConfig())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=again), base_url="https://cgs") as client:
        assert (await client.get("/oidc/keys")).json() == jwks


@pytest.mark.anyio
async def test_app_reads_and_lists_have_cgs_shapes(gov):
    alice = await gov.join("alice")
    assert (await gov.call("PUT", "/app/contracts/c1", {"data": {}}, who=alice)).status_code == 200  # {} is data
    assert (await gov.call("PUT", "/app/contracts/c2", {"data": None}, who=alice)).status_code == 400
    assert (await gov.call("GET", "/app/contracts", who=alice)).json() == {"value": [{"id": "c1"}]}
    assert (await gov.call("GET", "/app/contracts?state=Accepted", who=alice)).json() == {"value": []}
    assert (await gov.call("GET", "/app/contracts?state=Bogus", who=alice)).status_code == 400
    contract = (await gov.call("POST", "/app/contracts/c1", who=alice)).json()
    assert contract["state"] == "Draft" and contract["proposalId"] == ""
    await gov.pass_(alice, {"name": "set_contract", "args": {"contractId": "c1", "contract": contract}})
    await gov.pass_(alice, {"name": "set_clean_room_policy", "args": {
        "contractId": "c1", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": ["aa"]}}})
    assert (await gov.call("POST", "/app/contracts/c1/cleanroompolicy", who=alice)).json() == {
        "proposalIds": [], "policy": {"x-ms-sevsnpvm-hostdata": ["aa"]}}
    assert (await gov.call("PUT", "/app/memberdocuments/d1", {"contractId": "c1", "data": {"q": 1}},
                           who=alice)).status_code == 200
    assert (await gov.call("GET", "/app/memberdocuments", who=alice)).json() == {"value": [{"id": "d1"}]}
    assert (await gov.call("POST", "/app/contracts/c1/memberdocuments/d1", who=alice)).json()["data"] == {"q": 1}
    assert (await gov.call("POST", "/app/contracts/other/memberdocuments/d1", who=alice)).status_code == 404


@pytest.mark.anyio
async def test_events_default_to_the_contracts_id_and_no_scope_and_page_as_cgs_does(gov):
    alice = await gov.join("alice")
    await gov.call("PUT", "/app/contracts/c1", {"data": {"x": 1}}, who=alice)
    for n in range(5):
        gov.app.state.cgs.audit.append("c1", "", "c1", {"n": n})
    gov.app.state.cgs.audit.append("c1", "app", "c1", {"scoped": True})
    latest = (await gov.call("GET", "/app/contracts/c1/events", who=alice)).json()
    assert [e["data"] for e in latest["value"]] == [{"n": 4}]
    page = (await gov.call("GET", "/app/contracts/c1/events?from_seqno=1&max_seqno_per_page=2", who=alice)).json()
    # seqno 1 is the contract's put_contract record (scope cgs): not in the default scope
    assert [e["data"] for e in page["value"]] == [{"n": 0}, {"n": 1}]
    assert page["nextLink"].startswith("/app/contracts/c1/events?from_seqno=4&to_seqno=6&id=c1&scope=")
    rest = (await gov.call("GET", page["nextLink"], who=alice)).json()
    assert [e["data"] for e in rest["value"]] == [{"n": 2}, {"n": 3}, {"n": 4}] and "nextLink" not in rest
    scoped = (await gov.call("GET", "/app/contracts/c1/events?scope=app", who=alice)).json()
    assert [e["data"] for e in scoped["value"]] == [{"scoped": True}]
    beyond = await gov.call("GET", "/app/contracts/c1/events?from_seqno=1&to_seqno=99", who=alice)
    assert beyond.status_code == 400 and "committed" in beyond.json()["error"]["message"]
