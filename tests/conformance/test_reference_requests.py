"""The reference's requests, replayed against the CGS stand-in in real-wire mode.

Every request here is built as cgs-client or the governance sidecar builds it (`reference`, `vectors`: paths,
api-version, COSE envelopes signed with the reference's own test member, member certificates over TLS, compact
JSON bodies) and sent with plain httpx; the answers are checked against what CCF and the CGS app answer.
A stand-in that passes this suite is one a reference client can talk to; the attacks (replays, a stranger's
signature, a ballot for another member, a wrong proposal id) must be refused as CCF refuses them.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

import httpx
import pytest

from sidecars.common.memberauth import MemberIdentity
from tests.conformance import reference, vectors
from tests.conformance.conftest import Consortium, ReferenceClient, make_signer
from tests.conformance.reference import BALLOT_ACCEPT, TRANSACTION_ID_HEADER

HEX64 = re.compile(r"^[0-9a-f]{64}$")
TXID = re.compile(r"^2\.\d+$")
_ids = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}-{next(_ids)}"


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def route_missing(response: httpx.Response) -> bool:
    """No such route at all (as opposed to a missing resource or a feature not enabled, which name themselves in
    their error code: CGS answers `405 CANotEnabled`, for one)."""
    error = response.json().get("error", {}) if response.content else {}
    return (response.status_code == 405 and error.get("code") == "MethodNotAllowed") or (
        response.status_code == 404 and error.get("message") == "Not Found")


def draft_contract(alice: ReferenceClient, data: Any = None) -> tuple[str, dict[str, Any]]:
    """`az cleanroom governance contract create`: PUT {version: "", data} (custom.py), then read it back the way
    cgs-client does (POST, no body)."""
    contract_id = fresh("contract")
    put = alice.app("PUT", f"/app/contracts/{contract_id}", {"version": "", "data": data or {"purpose": "x"}})
    assert put.status_code == 200, put.text
    got = alice.app("POST", f"/app/contracts/{contract_id}")
    assert got.status_code == 200, got.text
    return contract_id, got.json()


def accepted_contract(consortium) -> str:
    """Runtime options can only be proposed for an accepted contract (actions.js: `Action can only be proposed
    once contract … has been accepted`)."""
    contract_id, draft = draft_contract(consortium["alice"])
    consortium.accept(consortium["alice"].propose({"name": "set_contract", "args": {
        "contractId": contract_id, "contract": draft}}))
    return contract_id


# -- api-version -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api_version, code", [(None, "MissingApiVersionParameter"),
                                               ("2023-01-01", "UnsupportedApiVersionValue")])
def test_gov_request_without_a_supported_api_version_is_refused_as_ccf_does(consortium, api_version, code):
    read = consortium.anonymous.gov_get("/gov/service/members", api_version=api_version)
    assert read.status_code == 400 and error_code(read) == code, read.text
    write = consortium["alice"].gov_post("/gov/members/proposals:create", consortium["alice"].envelope(
        "proposal", reference.proposal_payload()), api_version=api_version)
    assert write.status_code == 400 and error_code(write) == code, write.text


# -- members ---------------------------------------------------------------------------------------------------
def test_members_listed_in_ccf_shape_without_credentials(consortium: Consortium):
    listed = consortium.anonymous.gov_get("/gov/service/members")
    assert listed.status_code == 200, listed.text
    members = {m["memberId"]: m for m in listed.json()["value"]}
    for name, client in consortium.members.items():
        assert client.signer is not None
        member = members[client.signer.member_id]
        assert member["status"] == "Active"
        assert member["memberData"]["identifier"] == name
        assert "BEGIN CERTIFICATE" in member["certificate"]
    assert reference.REFERENCE_MEMBER0_ID in members, "the reference's own test member was admitted"


def test_state_digest_ack_with_a_wrong_digest_is_refused(consortium, tmp_path):
    newcomer = ReferenceClient(consortium.operator.standin, make_signer(tmp_path, "carol"), tmp_path / "tls")
    consortium.accept(consortium.operator.propose({"name": "set_member", "args": {
        "cert": newcomer.signer.cert_pem, "member_data": {"identifier": "carol"}}}))
    mid = newcomer.signer.member_id
    listed = {m["memberId"]: m for m in consortium.anonymous.gov_get("/gov/service/members").json()["value"]}
    assert listed[mid]["status"] == "Accepted"
    update = newcomer.gov_post(f"/gov/members/state-digests/{mid}:update", newcomer.envelope("state_digest", None))
    assert update.status_code == 200 and set(update.json()) == {"memberId", "stateDigest"}, update.text
    wrong = newcomer.gov_post(f"/gov/members/state-digests/{mid}:ack", newcomer.envelope(
        "ack", json.dumps({"memberId": mid, "stateDigest": "00" * 32})))
    assert wrong.status_code == 400 and error_code(wrong) == "StateDigestMismatch", wrong.text
    # Someone else's ack for this member: the path's member must be the signer.
    other = consortium["alice"].gov_post(f"/gov/members/state-digests/{mid}:ack",
                                         consortium["alice"].envelope("ack", update.text))
    assert other.status_code in (400, 401, 403), other.text
    listed = {m["memberId"]: m for m in consortium.anonymous.gov_get("/gov/service/members").json()["value"]}
    assert listed[mid]["status"] == "Accepted", "a refused ack must not activate the member"
    # The right ack activates carol, who votes from now on (an Accepted member would hold up set_contract).
    newcomer.activate()
    consortium.members["carol"] = newcomer


# -- proposals -------------------------------------------------------------------------------------------------
def test_set_contract_proposal_answers_and_commits_as_ccf(consortium):
    alice = consortium["alice"]
    contract_id, draft = draft_contract(alice)
    # CGS's version is "VIEW.SEQNO" of the draft's last write; cgs-client only compares it, so any string does.
    assert draft["state"] == "Draft" and draft["proposalId"] == "" and draft["version"], draft
    action = {"name": "set_contract", "args": {"contractId": contract_id, "contract": draft}}
    created = alice.propose(action)
    assert created.status_code == 200, created.text
    assert TXID.match(created.headers[TRANSACTION_ID_HEADER])
    view = created.json()
    assert HEX64.match(view["proposalId"]) and view["proposerId"] == alice.signer.member_id
    assert view["proposalState"] == "Open" and view["ballotCount"] == 0

    proposal_id = view["proposalId"]
    actions = consortium.anonymous.gov_get(f"/gov/members/proposals/{proposal_id}/actions")
    assert actions.status_code == 200 and actions.json() == {"actions": [action]}, actions.text
    proposed = alice.app("POST", f"/app/contracts/{contract_id}").json()
    assert proposed["state"] == "Proposed" and proposed["proposalId"] == proposal_id

    final = consortium.accept(created)
    assert final["ballotCount"] == len(consortium.members)
    assert final["finalVotes"] == {c.signer.member_id: True for c in consortium.members.values()}
    shown = consortium.anonymous.gov_get(f"/gov/members/proposals/{proposal_id}").json()
    assert shown["proposalState"] == "Accepted"
    listed = consortium.anonymous.gov_get("/gov/members/proposals").json()["value"]
    assert proposal_id in {p["proposalId"] for p in listed}
    accepted = alice.app("POST", f"/app/contracts/{contract_id}").json()
    assert accepted["state"] == "Accepted" and accepted["proposalId"] == proposal_id
    assert {v["memberId"] for v in accepted["finalVotes"]} == set(final["finalVotes"])


def test_one_reject_vetoes(consortium):
    contract_id, draft = draft_contract(consortium["alice"])
    created = consortium["alice"].propose({"name": "set_contract",
                                           "args": {"contractId": contract_id, "contract": draft}})
    rejected = consortium["bob"].vote(created.json()["proposalId"], False)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["proposalState"] == "Rejected"


def test_disabling_logging_is_accepted_without_votes(consortium):
    contract_id = accepted_contract(consortium)
    created = consortium["alice"].propose({"name": "set_contract_runtime_options_disable_logging",
                                           "args": {"contractId": contract_id}})
    assert created.status_code == 200 and created.json()["proposalState"] == "Accepted", created.text


def test_proposer_withdraws_and_nobody_else_can(consortium):
    contract_id, draft = draft_contract(consortium["alice"])
    proposal_id = consortium["alice"].propose({"name": "set_contract", "args": {
        "contractId": contract_id, "contract": draft}}).json()["proposalId"]
    target = f"/gov/members/proposals/{proposal_id}:withdraw"
    by_bob = consortium["bob"].gov_post(target, consortium["bob"].envelope("withdrawal", None,
                                                                           proposal_id=proposal_id))
    assert by_bob.status_code == 403, by_bob.text
    withdrawn = consortium["alice"].gov_post(target, consortium["alice"].envelope("withdrawal", None,
                                                                                  proposal_id=proposal_id))
    assert withdrawn.status_code == 200 and withdrawn.json()["proposalState"] == "Withdrawn", withdrawn.text
    late = consortium["bob"].vote(proposal_id, True)
    assert late.status_code == 400 and error_code(late) == "ProposalNotOpen", late.text


# -- ballots: exactly the two standard texts, for oneself, on the proposal signed for --------------------------
def open_proposal(consortium) -> str:
    contract_id, draft = draft_contract(consortium["alice"])
    return consortium["alice"].propose({"name": "set_contract", "args": {
        "contractId": contract_id, "contract": draft}}).json()["proposalId"]


@pytest.mark.parametrize("ballot", ["accept", "export function vote (proposal, proposerId) { return 1 }",
                                    BALLOT_ACCEPT + " ", None])
def test_ballot_other_than_the_two_standard_texts_is_refused(consortium, ballot):
    proposal_id = open_proposal(consortium)
    bob = consortium["bob"]
    payload = json.dumps({"vote": "yes"} if ballot is None else {"ballot": ballot})
    voted = bob.gov_post(f"/gov/members/proposals/{proposal_id}/ballots/{bob.signer.member_id}:submit",
                         bob.envelope("ballot", payload, proposal_id=proposal_id))
    assert voted.status_code == 400, voted.text
    assert consortium.anonymous.gov_get(f"/gov/members/proposals/{proposal_id}").json()["ballotCount"] == 0


def test_ballot_signed_for_another_proposal_or_member_is_refused(consortium):
    proposal_id, other_id = open_proposal(consortium), open_proposal(consortium)
    bob, alice = consortium["bob"], consortium["alice"]
    retargeted = bob.gov_post(f"/gov/members/proposals/{proposal_id}/ballots/{bob.signer.member_id}:submit",
                              bob.envelope("ballot", reference.ballot_payload(True), proposal_id=other_id))
    assert retargeted.status_code == 400 and error_code(retargeted) == "InvalidResourceName", retargeted.text
    for_alice = bob.gov_post(f"/gov/members/proposals/{proposal_id}/ballots/{alice.signer.member_id}:submit",
                             bob.envelope("ballot", reference.ballot_payload(True), proposal_id=proposal_id))
    assert for_alice.status_code == 400 and error_code(for_alice) == "InvalidResourceName", for_alice.text
    assert consortium.anonymous.gov_get(f"/gov/members/proposals/{proposal_id}").json()["ballotCount"] == 0


def test_changing_a_ballot_is_refused_and_repeating_it_is_idempotent(consortium):
    proposal_id = open_proposal(consortium)
    assert consortium["bob"].vote(proposal_id, True).status_code == 200
    again = consortium["bob"].vote(proposal_id, True)
    assert again.status_code == 200 and again.json()["ballotCount"] == 1, again.text
    changed = consortium["bob"].vote(proposal_id, False)
    assert changed.status_code == 400 and error_code(changed) == "VoteAlreadyExists", changed.text


# -- COSE envelope attacks -------------------------------------------------------------------------------------
def test_byte_identical_proposal_is_a_replay(consortium):
    alice = consortium["alice"]
    contract_id = accepted_contract(consortium)
    envelope = alice.envelope("proposal", reference.proposal_payload(
        {"name": "set_contract_runtime_options_disable_telemetry", "args": {"contractId": contract_id}}))
    first = alice.gov_post("/gov/members/proposals:create", envelope)
    assert first.status_code == 200, first.text
    again = alice.gov_post("/gov/members/proposals:create", envelope)
    assert again.status_code == 400 and error_code(again) == "ProposalReplay", again.text


def test_proposal_created_long_ago_is_refused(consortium):
    alice = consortium["alice"]
    stale = alice.envelope("proposal", reference.proposal_payload(), created_at=int(time.time()) - 30 * 24 * 3600)
    refused = alice.gov_post("/gov/members/proposals:create", stale)
    assert refused.status_code in (400, 401), refused.text


def test_header_order_does_not_matter(consortium):
    """The protected header is a CBOR map; .NET writes the ccf.gov.* labels before alg and kid, others may not."""
    alice = consortium["alice"]
    contract_id = accepted_contract(consortium)
    envelope = alice.envelope("proposal", reference.proposal_payload(
        {"name": "set_contract_runtime_options_disable_logging", "args": {"contractId": contract_id}}),
        custom_labels_first=False)
    created = alice.gov_post("/gov/members/proposals:create", envelope)
    assert created.status_code == 200, created.text


@pytest.mark.parametrize("attack", ["stranger", "kid_of_alice_key_of_stranger", "tampered_payload", "wrong_type",
                                    "es256_alg", "json_content_type", "unknown_kid"])
def test_forged_governance_writes_are_refused(consortium, tmp_path, attack):
    alice = consortium["alice"]
    stranger = make_signer(tmp_path, "mallory")
    payload = reference.proposal_payload({"name": "set_contract_runtime_options_disable_logging",
                                          "args": {"contractId": fresh("c")}})
    content_type = "application/cose"
    if attack == "stranger":
        envelope = reference.gov_envelope(stranger, "proposal", payload)
    elif attack == "kid_of_alice_key_of_stranger":
        envelope = reference.gov_envelope(stranger, "proposal", payload, kid=alice.signer.kid)
    elif attack == "tampered_payload":
        envelope = alice.envelope("proposal", payload).replace(b"disable_logging", b"disable_telemetry"[:15])
    elif attack == "wrong_type":
        envelope = alice.envelope("ballot", payload)
    elif attack == "es256_alg":
        envelope = alice.envelope("proposal", payload, alg=-7)
    elif attack == "json_content_type":
        envelope, content_type = alice.envelope("proposal", payload), "application/json"
    else:
        envelope = reference.gov_envelope(stranger, "proposal", payload, kid=b"0" * 64)
    refused = alice.gov_post("/gov/members/proposals:create", envelope, content_type=content_type)
    assert 400 <= refused.status_code < 500 and refused.status_code != 404, refused.text


# -- /app with the member's certificate --------------------------------------------------------------------------
def test_app_requests_authenticate_by_member_certificate(consortium, tmp_path):
    alice = consortium["alice"]
    assert alice.app("GET", "/app/contracts").status_code == 200
    anonymous = consortium.anonymous.app("GET", "/app/contracts")
    assert anonymous.status_code == 401, anonymous.text
    stranger = ReferenceClient(alice.standin, make_signer(tmp_path, "mallory"), tmp_path / "tls")
    contract_id = fresh("c")
    try:
        refused = stranger.app("PUT", f"/app/contracts/{contract_id}", {"version": "", "data": {"x": 1}})
        assert refused.status_code == 401, refused.text
    except httpx.TransportError:
        pass  # the stand-in may refuse an unknown certificate in the handshake already (CCF answers 401)
    finally:
        stranger.close()
    assert alice.app("POST", f"/app/contracts/{contract_id}").status_code == 404, "the stranger wrote nothing"


def test_execution_consent_on_the_runtimeoptions_paths(consortium):
    alice = consortium["alice"]
    draft_id, _draft = draft_contract(alice)
    # contractruntimeoptions.ts: consent is set only on an accepted contract (400 ContractNotAccepted before)
    refused = alice.app("POST", f"/app/contracts/{draft_id}/runtimeoptions/execution/disable")
    assert refused.status_code == 400 and error_code(refused) == "ContractNotAccepted", refused.text
    contract_id = accepted_contract(consortium)
    base = f"/app/contracts/{contract_id}/runtimeoptions"
    disabled = alice.app("POST", f"{base}/execution/disable")
    assert disabled.status_code == 200 and TXID.match(disabled.headers[TRANSACTION_ID_HEADER]), disabled.text
    status = alice.app("POST", f"{base}/execution/status")
    assert status.status_code == 200 and status.json()["status"] == "disabled", status.text
    for option in ("logging", "telemetry"):
        shown = alice.app("POST", f"{base}/{option}/status")
        assert shown.status_code == 200 and shown.json()["status"] in ("enabled", "disabled"), shown.text


def test_member_document_put_and_read(consortium):
    alice = consortium["alice"]
    contract_id, _draft = draft_contract(alice)
    document_id = fresh("doc")
    put = alice.app("PUT", f"/app/memberdocuments/{document_id}",
                    {"version": "", "contractId": contract_id, "data": {"query": "SELECT 1"}})
    assert put.status_code == 200, put.text
    document = alice.app("GET", f"/app/memberdocuments/{document_id}")
    assert document.status_code == 200 and document.json()["contractId"] == contract_id, document.text
    created = alice.propose({"name": "set_member_document", "args": {"documentId": document_id,
                                                                     "document": document.json()}})
    assert created.status_code == 200 and created.json()["proposalState"] == "Open", created.text


# -- transactions ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["app", "gov"])
def test_transaction_status_answers(consortium, endpoint):
    http = consortium.anonymous.gov_http
    contract_id, draft = draft_contract(consortium["alice"])
    seen = consortium["alice"].propose({"name": "set_contract", "args": {
        "contractId": contract_id, "contract": draft}}).headers[TRANSACTION_ID_HEADER]
    seqno = int(seen.split(".")[1])

    def status(tx: str) -> httpx.Response:
        return http.get(f"/{endpoint}/tx", params={"transaction_id": tx})

    assert status(seen).json() == {"transaction_id": seen, "status": "Committed"}
    assert status(f"2.{seqno + 10_000}").json()["status"] == "Unknown"
    assert status(f"7.{seqno}").json()["status"] == "Invalid"
    for malformed in ("2", "x.1", "2.1; DROP", ""):
        assert status(malformed).status_code == 400, malformed


# -- every reference request has its route; no legacy route is left ------------------------------------------------
@pytest.fixture(scope="module")
def resources(consortium) -> dict[str, str]:
    alice = consortium["alice"]
    contract_id, draft = draft_contract(alice)
    consortium.accept(alice.propose({"name": "set_contract", "args": {"contractId": contract_id,
                                                                      "contract": draft}}))
    document_id = fresh("doc")
    alice.app("PUT", f"/app/memberdocuments/{document_id}", {"version": "", "contractId": contract_id,
                                                             "data": {}})
    proposal_id = open_proposal(consortium)
    return {"contractId": contract_id, "documentId": document_id, "proposalId": proposal_id,
            "memberId": alice.signer.member_id, "option": "execution", "secretId": "s", "secretName": "s"}


@pytest.mark.parametrize("wire", vectors.ALL, ids=lambda w: w.id)
def test_every_reference_request_reaches_a_route(consortium, resources, wire):
    """Sent with the caller the reference uses (a room's request without evidence must be refused by the route,
    not missed by the router)."""
    client = consortium["alice"] if wire.auth in ("member_cert", "cose") else consortium.anonymous
    target = wire.fill(**resources)
    if wire.versioned:
        target = client.gov_target(target)
    if wire.query == ("transaction_id",):
        target += "?transaction_id=2.1"
    if wire.body == "cose":
        response = client.gov_http.post(target, content=client.envelope(wire.msg_type, "{}"),
                                        headers={"content-type": "application/cose"})
    elif wire.body in ("room_request", "room_signed"):
        response = client.http.request(wire.method, target, json={})
    else:
        response = client.http.request(wire.method, target)
    assert not route_missing(response), f"{wire.method} {target}: {response.status_code} {response.text}"


@pytest.mark.parametrize("method, path", vectors.LEGACY, ids=[p for _m, p in vectors.LEGACY])
def test_legacy_paths_are_gone(consortium, resources, method, path):
    response = consortium["alice"].http.request(method, path.format(**resources), json={})
    assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"


def test_legacy_signed_header_is_refused(consortium, tmp_path):
    """Without --allow-signed-header the old `Authorization: CCR-Member` scheme opens nothing."""
    identity = MemberIdentity(consortium["alice"].signer.cert.subject.rfc4514_string(),
                              consortium["alice"].signer.key, consortium["alice"].signer.cert)
    target = "/app/contracts"
    response = consortium.anonymous.http.get(target, headers={
        "authorization": identity.authorization("GET", target, b"")})
    assert response.status_code == 401, response.text
