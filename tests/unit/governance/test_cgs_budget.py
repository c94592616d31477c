"""The privacy budget ledger in the CGS stand-in, attacked over its HTTP API in process: a room spends until
the budget is gone and is then refused naming what is left; many runs racing for the last ε cannot overspend;
a replayed runId spends once; a room cannot under-report the charge; only the owner's vote raises a budget;
every spend and refusal is on the hash-chained audit log."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecars.common.auditchain import verify_chain
from sidecars.common.envelope import Attestation, RoomKey, report_data_for
from sidecars.common.errors import BadRequest, Forbidden
from sidecars.common.memberauth import MemberIdentity
from sidecars.emulators.cgs import budget, db
from sidecars.emulators.cgs.app import build_app
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.deps import CgsConfig
from sidecars.emulators.cgs.issuer import OidcIssuer
from sidecars.emulators.cgs.store import Store
from sidecars.governance.cgs_client import CgsRoomClient
from sidecars.governance.service import GovernanceConfig
from sidecars.governance.service import build_app as build_governance

HOST_DATA = "bb" * 32
CONTRACT = "c1"
SPEND = f"/app/contracts/{CONTRACT}/privacybudget/spend"


def _claims(attestation: dict[str, Any]) -> dict[str, Any]:
    """The test's 'evidence' is the REPORT_DATA it claims, in hex (SNP verification is tested elsewhere)."""
    return {"x-ms-sevsnpvm-reportdata": attestation["evidence"], "x-ms-sevsnpvm-hostdata": HOST_DATA}


def dataset(total: float, per_query: float = 1) -> str:
    return json.dumps({"name": "sales", "owner": "northwind", "store": "s", "container": "s", "format": "csv",
                       "schema": [{"name": "person", "type": "string"}, {"name": "city", "type": "string"}],
                       "allowedFields": ["person", "city"], "accessMode": "aggregate", "encryption": {"mode": "SSE"},
                       "privacy": {"epsilonTotal": total, "perQueryEpsilonMax": per_query, "contributionBound": 1,
                                   "personKey": "person"}})


def query(epsilon: float) -> str:
    return json.dumps({"inputDatasets": [{"datasetName": "sales", "viewName": "s"}],
                       "outputDataset": {"datasinkName": "sink"},
                       "segments": [{"executionSequence": 1, "sql": "SELECT city, COUNT(*) AS n FROM s GROUP BY city",
                                     "private": True, "epsilon": epsilon, "publicKeys": {"city": ["a", "b"]}}]})


def document(document_id: str, kind: str, data: str) -> dict[str, Any]:
    return {"name": "set_member_document", "args": {"documentId": document_id, "document": {
        "contractId": CONTRACT, "data": data, "labels": {"kind": kind}}}}


class Stand:
    def __init__(self, tmp_path):
        self.database = db.Database(tmp_path / "cgs.db")
        operator = MemberIdentity.create(tmp_path / "operator", "operator")
        issuer = OidcIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "https://cgs/oidc")
        self.app = build_app(Store(self.database), AuditLog(self.database), _claims, issuer, operator.cert,
                             CgsConfig(replay_window_s=60))
        self.cgs = self.app.state.cgs
        self.store: Store = self.cgs.store
        self.northwind, self.woodgrove = "n" * 64, "w" * 64
        self.store.add_member(self.northwind, "northwind", "cert-n")
        self.store.add_member(self.woodgrove, "woodgrove", "cert-w")
        self.store.put_contract(CONTRACT, {}, None)
        self.accept(self.northwind, {"name": "set_contract", "args": {
            "contractId": CONTRACT, "contract": self.store.contract_view(CONTRACT)}}, everyone=True)
        self.accept(self.northwind, {"name": "set_clean_room_policy", "args": {
            "contractId": CONTRACT, "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [HOST_DATA]}}},
            everyone=True)
        self.key = RoomKey.generate()

    def accept(self, proposer: str, action: dict[str, Any], *, everyone: bool = False) -> None:
        """Proposed by `proposer`, accepted by every member (`everyone`) or by northwind, the data's owner."""
        pid = self.store.create_proposal(proposer, [action])["proposalId"]
        voters = [m for m in self.store.state.members if m != "operator"] if everyone else [self.northwind]
        for member in voters:
            if self.store.proposal(pid)["state"] == "Open":
                self.store.vote(pid, member, True)
        assert self.store.proposal(pid)["state"] == "Accepted"

    async def spend(self, run_id: str, query_id: str = "q") -> httpx.Response:
        body = self.key.signed_request(Attestation(self.key.report_data.hex(), "", ""),
                                       {"runId": run_id, "queryId": query_id})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="https://cgs") as client:
            return await client.post(SPEND, json=body)

    def answer(self, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        return json.loads(self.key.unwrap(response.json()["value"]))

    def events(self) -> list[dict[str, Any]]:
        return [e["data"] for e in self.cgs.audit.events(CONTRACT) if e["id"] == budget.EVENT_ID]

    def spent_rows(self) -> int:
        budget._ensure_ledger(self.cgs)
        return self.database.conn.execute("SELECT COALESCE(SUM(epsilon), 0) FROM privacy_spends").fetchone()[0]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def stand(tmp_path) -> Iterator[Stand]:
    stand = Stand(tmp_path)
    stand.accept(stand.northwind, document("sales", "dataset", dataset(total=3)))
    stand.accept(stand.woodgrove, document("q", "query", query(epsilon=1)))
    yield stand
    stand.database.close()


@pytest.mark.anyio
async def test_runs_spend_until_the_budget_is_gone_then_are_refused_naming_what_is_left(stand):
    for number, left in ((1, 2), (2, 1), (3, 0)):
        ack = stand.answer(await stand.spend(f"run-{number}"))
        assert ack["acknowledged"] and not ack["replayed"]
        assert ack["spends"] == [{"dataset": "sales", "epsilon": 1.0, "epsilonRemaining": float(left)}]
    refused = await stand.spend("run-4")
    assert refused.status_code == 409
    assert refused.json()["error"] == {"code": "PrivacyBudgetExhausted", "message":
                                       "dataset 'sales': the run needs epsilon 1, 0 of 3 is left"}
    assert stand.spent_rows() == 3_000_000
    actions = [event["action"] for event in stand.events()]
    assert actions == ["spend_privacy_budget"] * 3 + ["privacy_budget_refused"]
    chain = stand.cgs.audit.events(CONTRACT)
    assert verify_chain(chain, stand.cgs.audit.head(CONTRACT)) == []


@pytest.mark.anyio
async def test_concurrent_runs_cannot_overspend(stand):
    answers = await asyncio.gather(*(stand.spend(f"race-{i}") for i in range(8)))
    codes = sorted(response.status_code for response in answers)
    assert codes == [200] * 3 + [409] * 5
    assert stand.spent_rows() == 3_000_000


def test_threads_racing_for_the_ledger_cannot_overspend(stand):
    """The same race without the event loop: threads enter the spend together (a barrier), so only the
    ledger's transaction stands between them and a double spend."""
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def run(number: int) -> None:
        barrier.wait()
        try:
            budget.spend(stand.cgs, CONTRACT, f"thread-{number}", "q")
            outcomes.append("spent")
        except budget.PrivacyBudgetExhausted:
            outcomes.append("refused")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["refused"] * 9 + ["spent"] * 3
    assert stand.spent_rows() == 3_000_000


@pytest.mark.anyio
async def test_a_replayed_run_id_spends_once_and_cannot_be_reused_for_another_query(stand):
    first = stand.answer(await stand.spend("again"))
    second = stand.answer(await stand.spend("again"))
    assert (first["replayed"], second["replayed"]) == (False, True)
    assert stand.spent_rows() == 1_000_000
    stand.accept(stand.woodgrove, document("q2", "query", query(epsilon=0.5)))
    conflict = await stand.spend("again", "q2")
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "RunIdConflict")
    assert stand.spent_rows() == 1_000_000
    assert [event["action"] for event in stand.events()] == ["spend_privacy_budget"]


@pytest.mark.anyio
async def test_the_charge_is_computed_by_cgs_from_the_accepted_documents(stand):
    # the room names a query; what it costs is the accepted document's ε, not anything the room says
    body = stand.key.signed_request(Attestation(stand.key.report_data.hex(), "", ""),
                                    {"runId": "cheap", "queryId": "q", "epsilon": 0.000001})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stand.app), base_url="https://cgs") as client:
        ack = stand.answer(await client.post(SPEND, json=body))
    assert ack["spends"][0]["epsilon"] == 1.0
    unknown = await stand.spend("ghost", "no-such-query")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "UnknownQuery")


@pytest.mark.anyio
async def test_a_room_without_attestation_or_with_another_policy_cannot_spend(stand):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stand.app), base_url="https://cgs") as client:
        bare = await client.post(SPEND, json={"data": "e30=", "runId": "x"})
        assert bare.status_code == 400
        stranger = RoomKey.generate()
        body = stranger.signed_request(Attestation("00" * 64, "", ""), {"runId": "x", "queryId": "q"})
        assert (await client.post(SPEND, json=body)).status_code == 400
    assert stand.spent_rows() == 0


@pytest.mark.anyio
async def test_only_the_owners_vote_raises_a_budget(stand):
    for number in range(3):
        stand.answer(await stand.spend(f"use-{number}"))
    grant = json.dumps({"dataset": "sales", "epsilon": 1})
    # woodgrove can neither propose a raise of northwind's budget nor decide one
    with pytest.raises(Forbidden, match="only its owner raises its privacy budget"):
        stand.store.create_proposal(stand.woodgrove, [document("sales-more", "budget", grant)])
    pid = stand.store.create_proposal(stand.northwind, [document("sales-more", "budget", grant)])["proposalId"]
    stand.store.vote(pid, stand.woodgrove, True)
    assert stand.store.proposal(pid)["state"] == "Open"
    assert (await stand.spend("use-3")).status_code == 409
    # the owner's own vote accepts it, and the budget grows by the grant
    stand.store.vote(pid, stand.northwind, True)
    assert stand.store.proposal(pid)["state"] == "Accepted"
    ack = stand.answer(await stand.spend("use-3"))
    assert ack["spends"][0]["epsilonRemaining"] == 0.0
    view = budget.budget_view(stand.cgs, CONTRACT, "sales")
    assert (view["epsilonTotal"], view["epsilonSpent"], view["epsilonRemaining"]) == (4.0, 4.0, 0.0)
    assert [spend["runId"] for spend in view["spends"]] == ["use-0", "use-1", "use-2", "use-3"]


def test_a_query_with_a_plain_segment_over_a_private_dataset_is_refused_at_the_proposal(stand):
    plain = json.dumps({"inputDatasets": [{"datasetName": "sales", "viewName": "s"}],
                        "outputDataset": {"datasinkName": "sink"},
                        "segments": [{"executionSequence": 1, "sql": "SELECT COUNT(*) AS n FROM s"}]})
    with pytest.raises(BadRequest, match="segment 1 is not private"):
        stand.store.create_proposal(stand.woodgrove, [document("q3", "query", plain)])
    with pytest.raises(BadRequest, match="allows at most 1"):
        stand.store.create_proposal(stand.woodgrove, [document("q4", "query", query(epsilon=2))])



class _RoomTransport(httpx.AsyncBaseTransport):
    """The room's network as the governance sidecar sees it: skr answers evidence naming the key it was given
    (what `_claims` reads back), and everything else is the CGS stand-in."""

    def __init__(self, cgs_app):
        self.cgs = httpx.ASGITransport(app=cgs_app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/attest/combined":
            pem = base64.b64decode(json.loads(request.content)["runtime_data"])
            return httpx.Response(200, json={"evidence": report_data_for(pem).hex(), "endorsements": "",
                                             "uvm_endorsements": ""})
        return await self.cgs.handle_async_request(request)


@pytest.mark.anyio
async def test_the_governance_sidecar_forwards_the_spend_and_passes_cgs_refusal_on(stand):
    client = CgsRoomClient("https://cgs", CONTRACT, skr_url="http://skr")
    client._http = httpx.AsyncClient(transport=_RoomTransport(stand.app))
    sidecar = build_governance(client, GovernanceConfig(CONTRACT, consent_poll_interval_s=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sidecar), base_url="http://gov") as app:
        answers = [await app.post("/privacybudget/spend", json={"runId": f"g{n}", "queryId": "q"}) for n in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 409]
    assert answers[0].json()["acknowledged"] is True and answers[2].json()["spends"][0]["epsilonRemaining"] == 0.0
    assert answers[3].json()["error"]["code"] == "PrivacyBudgetExhausted"
    assert "0 of 3 is left" in answers[3].json()["error"]["message"]
