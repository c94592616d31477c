"""What `CgsMemberClient` puts on the wire: COSE Sign1 governance writes that verify with the member's
certificate, `api-version` exactly where cgs-client sends it, no legacy header unless asked for, and a write
done only once its transaction is committed (`/gov/tx` for governance, `/app/tx` for the app)."""

from __future__ import annotations

import json

import httpx
import pytest

from sidecars.common.ccftx import TransactionNotCommitted
from sidecars.common.cose import verify_gov_message
from sidecars.common.errors import ConfigError
from sidecars.common.memberauth import MemberIdentity
from sidecars.governance.member_client import BALLOT_ACCEPT, CgsMemberClient


class Recorder:
    """A CGS that records each request and answers writes with a transaction id, committed after `pending`
    status queries."""

    def __init__(self, pending: int = 0, status: str = "Committed"):
        self.requests: list[httpx.Request] = []
        self.pending, self.status = pending, status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path in ("/gov/tx", "/app/tx"):
            self.pending -= 1
            status = self.status if self.pending < 0 else "Pending"
            return httpx.Response(200, json={"transaction_id": "2.7", "status": status})
        if request.method == "GET":
            return httpx.Response(200, json={"value": []})
        return httpx.Response(200, json={"proposalId": "p1", "proposalState": "Open"},
                              headers={"x-ms-ccf-transaction-id": "2.7"})


@pytest.fixture
def alice(tmp_path) -> MemberIdentity:
    return MemberIdentity.create(tmp_path / "alice", "alice")


def _client(alice: MemberIdentity, recorder: Recorder, auth: str = "cert") -> CgsMemberClient:
    client = CgsMemberClient("https://cgs.test", alice, auth=auth)  # type: ignore[arg-type]
    client._http = httpx.Client(base_url="https://cgs.test", transport=httpx.MockTransport(recorder))
    client._gov = httpx.Client(base_url="https://cgs.test", transport=httpx.MockTransport(recorder))
    return client


def test_a_proposal_is_a_cose_message_the_service_can_verify(alice):
    recorder = Recorder()
    _client(alice, recorder).propose({"name": "set_contract", "args": {"contractId": "c1"}})
    write, status = recorder.requests
    assert (write.method, write.url.path, write.url.params["api-version"]) == (
        "POST", "/gov/members/proposals:create", "2024-07-01")
    assert write.headers["content-type"] == "application/cose" and "authorization" not in write.headers
    message = verify_gov_message(write.content, {alice.member_id: alice.cert}.get)
    assert message.msg_type == "proposal" and message.proposal_id is None
    assert json.loads(message.payload) == {"actions": [{"name": "set_contract", "args": {"contractId": "c1"}}]}
    assert (status.url.path, status.url.params["transaction_id"]) == ("/gov/tx", "2.7")
    assert "api-version" not in status.url.params


def test_a_ballot_signs_its_proposal_and_the_standard_vote(alice):
    recorder = Recorder()
    _client(alice, recorder).vote("p1", True)
    message = verify_gov_message(recorder.requests[0].content, {alice.member_id: alice.cert}.get)
    assert (message.msg_type, message.proposal_id) == ("ballot", "p1")
    assert json.loads(message.payload) == {"ballot": BALLOT_ACCEPT}
    assert recorder.requests[0].url.path == f"/gov/members/proposals/p1/ballots/{alice.member_id}:submit"


def test_app_requests_are_json_without_api_version_and_wait_on_app_tx(alice):
    recorder = Recorder(pending=2)
    _client(alice, recorder).put_contract("c1", {"x": 1})
    write, *statuses = recorder.requests
    assert (write.method, write.url.path, dict(write.url.params)) == ("PUT", "/app/contracts/c1", {})
    assert json.loads(write.content) == {"data": {"x": 1}} and "authorization" not in write.headers
    assert [s.url.path for s in statuses] == ["/app/tx"] * 3


def test_gov_reads_name_the_api_version(alice):
    recorder = Recorder()
    _client(alice, recorder).proposals()
    (read,) = recorder.requests
    assert (read.url.path, read.url.params["api-version"]) == ("/gov/members/proposals", "2024-07-01")


def test_a_write_that_is_rolled_back_fails(alice):
    with pytest.raises(TransactionNotCommitted, match="Invalid"):
        _client(alice, Recorder(status="Invalid")).propose({"name": "x", "args": {}})


def test_the_legacy_header_only_when_asked_for(alice):
    recorder = Recorder()
    _client(alice, recorder, auth="header").propose({"name": "x", "args": {}})
    write = recorder.requests[0]
    assert write.headers["authorization"].startswith("CCR-Member ")
    assert write.headers["content-type"] == "application/json"
    with pytest.raises(ConfigError, match="member auth"):
        CgsMemberClient("https://cgs.test", alice, auth="token")  # type: ignore[arg-type]


def test_an_identity_without_files_cannot_present_its_certificate(alice):
    detached = MemberIdentity(alice.name, alice.key, alice.cert)
    with pytest.raises(ConfigError, match="cannot be presented in TLS"):
        CgsMemberClient("https://cgs.test", detached)
