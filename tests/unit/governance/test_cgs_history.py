"""A contract's history grows; what a member's write and a listing cost must not. Listings come a page at a
time (`{value, nextLink}`, as CCF and CGS page) and the member client follows every page, but only to new
paths on the same service; a ballot reads the open proposals, not every proposal ever made."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sidecars.common.ccfwire import with_api_version
from sidecars.common.memberauth import MemberIdentity
from sidecars.emulators.cgs.app import build_app
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.deps import CgsConfig
from sidecars.emulators.cgs.issuer import OidcIssuer
from sidecars.emulators.cgs.store import Store
from sidecars.governance.member_client import CgsMemberClient, CgsRequestFailed

A, B = "a" * 64, "b" * 64


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _no_evidence(_attestation: dict) -> dict:
    raise AssertionError("no test here verifies evidence")


class Cgs:
    """The stand-in in process, with alice a registered member reading over mutual TLS."""

    def __init__(self, tmp_path):
        self.operator = MemberIdentity.create(tmp_path / "operator", "operator")
        self.alice = MemberIdentity.create(tmp_path / "alice", "alice")
        self.store = Store(tmp_path / "cgs.db")
        self.store.add_member(self.alice.member_id, "alice", self.alice.cert_pem)
        self.app = build_app(self.store, AuditLog(self.store.db), _no_evidence, OidcIssuer(None, "https://cgs/oidc"),
                             self.operator.cert, CgsConfig())

    async def get(self, target: str) -> httpx.Response:
        async def connection(scope, receive, send):
            scope = {**scope, "extensions": {"tls": {"client_cert_chain": [self.alice.cert_pem]}}}
            await self.app(scope, receive, send)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=connection), base_url="https://cgs") as client:
            return await client.get(with_api_version(target))

    async def every_page(self, first: str) -> list[list[Any]]:
        pages, target = [], first
        while target:
            answer = await self.get(target)
            assert answer.status_code == 200, answer.text
            pages.append(answer.json()["value"])
            target = answer.json().get("nextLink")
            assert len(pages) < 100, "the listing never ends"
        return pages


@pytest.fixture
def cgs(tmp_path) -> Cgs:
    return Cgs(tmp_path)


@pytest.mark.anyio
async def test_listings_come_in_pages_and_following_next_link_gives_every_entry_once(cgs):
    store = cgs.store
    for contract_id in ("c1", "c2"):
        store.put_contract(contract_id, {"x": 1}, None)
    for n in range(130):
        store.put_document(f"d{n:03}", "c1" if n % 4 else "c2", {"n": n}, None)
        store.create_proposal(cgs.alice.member_id, [{"name": "set_member_document", "args": {
            "documentId": f"d{n:03}", "document": store.state.documents[f"d{n:03}"]}}])

    pages = await cgs.every_page("/app/contracts/c1/memberdocuments?$maxpagesize=40")
    assert len(pages) == 4 and all(len(page) <= 40 for page in pages)
    ids = [d["id"] for page in pages for d in page]
    assert sorted(ids) == [f"d{n:03}" for n in range(130) if n % 4]  # each once, none of c2's

    proposals = await cgs.every_page("/gov/members/proposals")  # the default page: 100
    assert [len(page) for page in proposals] == [100, 30]
    assert len({p["proposalId"] for page in proposals for p in page}) == 130

    contracts = await cgs.every_page("/app/contracts?state=Draft&$maxpagesize=1")
    assert [c["id"] for page in contracts for c in page] == ["c1", "c2"]


@pytest.mark.anyio
async def test_a_skiptoken_the_service_never_gave_or_a_page_of_nothing_is_refused_in_one_line(cgs):
    for query in ("$skiptoken=%21%21not-base64", "$skiptoken=bm90IGpzb24", "$skiptoken=" + "A" * 5000,
                  "$maxpagesize=0", "$maxpagesize=-5"):
        refused = await cgs.get(f"/app/memberdocuments?{query}")
        assert refused.status_code == 400, query
        message = refused.json()["error"]["message"]
        assert "\n" not in message and ("$skiptoken" in message or "$maxpagesize" in message)
    # A page never holds more than the service's maximum, whatever is asked.
    for n in range(3):
        cgs.store.put_contract(f"c{n}", {}, None)
    assert len((await cgs.get("/app/contracts?$maxpagesize=99999999")).json()["value"]) == 3


class _CountingProposals(dict):
    """The store's proposals, counting the reads that walk all of them."""

    walks = 0

    def items(self):
        type(self).walks += 1
        return super().items()

    def values(self):
        type(self).walks += 1
        return super().values()

    def __iter__(self):
        type(self).walks += 1
        return super().__iter__()


def test_a_ballot_and_a_proposal_read_the_open_proposals_not_every_proposal_ever_made(tmp_path):
    store = Store(tmp_path / "cgs.db")
    store.add_member(A, "alice", "cert-a")
    store.add_member(B, "bob", "cert-b")
    store.put_contract("c1", {}, None)
    for n in range(20):  # a history of decided proposals
        document = store.put_document(f"old{n}", "c1", {"n": n}, None)
        action = {"name": "set_member_document", "args": {"documentId": f"old{n}", "document": document}}
        pid = store.create_proposal(A, [action])["proposalId"]
        store.vote(pid, A, True)
        store.vote(pid, B, n % 2 == 0)
    store.state.proposals = _CountingProposals(store.state.proposals)
    _CountingProposals.walks = 0

    document = store.put_document("new", "c1", {"n": "new"}, None)
    action = {"name": "set_member_document", "args": {"documentId": "new", "document": document}}
    pid = store.create_proposal(A, [action])["proposalId"]
    # A second proposal about the same document is still seen (it is open) and rejected.
    assert store.create_proposal(A, [action])["state"] == "Rejected"
    assert store.document_view("new")["state"] == "Proposed"
    store.vote(pid, A, True)
    assert store.vote(pid, B, True)["state"] == "Accepted"
    assert _CountingProposals.walks == 0


class _HostileCgs:
    """Answers each GET from `pages` by path (any query included)."""

    def __init__(self, pages: dict[str, dict]):
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                body = json.dumps(pages[self.path.split("?api-version")[0].split("&api-version")[0]]).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


EVENTS = "/app/contracts/c1/events?from_seqno=1&max_seqno_per_page=2000&chain=true"


@pytest.mark.parametrize("next_link", ["/app/contracts?$skiptoken=x", "https://elsewhere.example/app/contracts",
                                       "//elsewhere.example/app/contracts", 42])
def test_the_member_client_follows_pages_only_to_new_paths_on_the_same_service(tmp_path, next_link):
    loop = "/app/contracts?$skiptoken=x"
    cgs = _HostileCgs({"/app/contracts": {"value": [{"id": "c1"}], "nextLink": "/app/contracts?$skiptoken=x"},
                       loop: {"value": [{"id": "c2"}], "nextLink": next_link},
                       EVENTS: {"value": [{"seqno": 1}], "nextLink": EVENTS},
                       "/gov/members/proposals": {"value": [], "nextLink": "/gov/members/proposals"}})
    try:
        with CgsMemberClient(cgs.url, MemberIdentity.create(tmp_path / "m", "m")) as client:
            with pytest.raises(CgsRequestFailed, match="nextLink"):
                client.contracts()
            with pytest.raises(CgsRequestFailed, match="nextLink"):
                client.events("c1")
            with pytest.raises(CgsRequestFailed, match="nextLink"):
                client.proposals()
    finally:
        cgs.close()
    assert not any("elsewhere" in request for request in cgs.requests)
    assert len(cgs.requests) <= 6  # each listing stops at the first link it will not follow
