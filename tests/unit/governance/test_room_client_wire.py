"""What the room's CGS client sends and when it calls a write done, against a scripted CGS: consent checks at
`runtimeoptions/{option}/status` with the evidence alone, documents at `memberdocuments/accepted/{id}`, and an
audit event acknowledged to the app only once `/app/tx` says its transaction is `Committed`."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from sidecars.common import ccftx
from sidecars.common.envelope import wrap
from sidecars.governance.cgs_client import CgsRoomClient
from sidecars.governance.service import GovernanceConfig, build_app

EVIDENCE = {"evidence": "ZXZpZGVuY2U=", "endorsements": "ZW5kb3JzZW1lbnRz", "uvm_endorsements": ""}
ROOT = "https://cgs.example:8443"
PREFIX = "/app/contracts/c1"


class ScriptedCgs:
    """Answers the room as CGS would; `/app/tx` answers the statuses in `statuses`, the last one for ever."""

    def __init__(self, statuses: list[str], *, txid: str | None = "2.41"):
        self.statuses, self.txid = statuses, txid
        self.requests: list[tuple[str, str, dict]] = []
        self.room_pem: bytes | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.method, str(request.url), body))
        path = request.url.path
        if path == "/attest/combined":
            self.room_pem = base64.b64decode(body["runtime_data"])
            return httpx.Response(200, json=EVIDENCE)
        if path == "/app/tx":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return httpx.Response(200, json={"transaction_id": request.url.params["transaction_id"], "status": status})
        headers = {"x-ms-ccf-transaction-id": self.txid} if self.txid else {}
        if path == f"{PREFIX}/events":
            return httpx.Response(204, headers=headers)
        if path.startswith(f"{PREFIX}/runtimeoptions/"):
            return httpx.Response(200, json={"status": "enabled"})
        if path.startswith(f"{PREFIX}/memberdocuments/accepted/"):
            assert self.room_pem is not None
            value = wrap(self.room_pem, json.dumps({"data": {"q": 1}}).encode())
            return httpx.Response(200, json={"value": base64.b64encode(value).decode()})
        if path == f"{PREFIX}/ca/generateEndorsedCert":
            assert self.room_pem is not None
            value = wrap(self.room_pem, json.dumps({"cert": "PEM"}).encode())
            return httpx.Response(200, headers=headers, json={"value": base64.b64encode(value).decode()})
        return httpx.Response(404, json={"error": {"code": "NotFound", "message": path}})

    def tx_polls(self) -> list[str]:
        return [url for method, url, _ in self.requests if "/tx?" in url]


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(ccftx, "POLL_INTERVAL_S", 0.01)


def client_for(cgs: ScriptedCgs, **options) -> CgsRoomClient:
    client = CgsRoomClient(ROOT, "c1", skr_url="http://127.0.0.1:8284", **options)
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(cgs))
    return client


def run(factory: Callable[[], object]):
    return asyncio.run(factory())


def test_an_audit_event_is_done_only_once_committed():
    cgs = ScriptedCgs(["Unknown", "Pending", "Committed"])
    client = client_for(cgs)
    run(lambda: client.put_event({"step": "mount"}, event_id="c1", scope="volumes"))
    # Polled at the service's root, not under the contract prefix, with the id the write named.
    assert cgs.tx_polls() == [f"{ROOT}/app/tx?transaction_id=2.41"] * 3
    method, url, body = next(r for r in cgs.requests if r[0] == "PUT")
    assert url == f"{ROOT}{PREFIX}/events?id=c1&scope=volumes"
    assert json.loads(base64.b64decode(body["data"])) == {"step": "mount"}
    assert set(body) == {"data", "timestamp", "sign", "encrypt", "platform", "attestation"}


@pytest.mark.parametrize("statuses, message", [(["Invalid"], "status Invalid"),
                                               (["Unknown"], "not committed within 0.2 s")])
def test_an_audit_event_not_committed_is_not_acknowledged_to_the_app(statuses, message):
    """The sidecar answers the app's PUT /events with an error, so the caller's audited step does not run."""
    cgs = ScriptedCgs(statuses)
    sidecar = build_app(client_for(cgs, commit_timeout_s=0.2), GovernanceConfig("c1", consent_poll_interval_s=0))

    async def put() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sidecar), base_url="http://gov") as app:
            return await app.put("/events", json={"step": "launch"})

    answer = run(put)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "TransactionNotCommitted" and message in answer.json()["error"]["message"]


def test_a_malformed_transaction_id_is_refused_not_put_into_a_url():
    cgs = ScriptedCgs(["Committed"], txid="2.41&transaction_id=1.1")
    with pytest.raises(ccftx.TransactionNotCommitted, match="malformed transaction id"):
        run(lambda: client_for(cgs).put_event({"step": "x"}, event_id=None, scope=None))
    assert cgs.tx_polls() == []


def test_an_answer_without_a_transaction_id_needs_no_wait():
    cgs = ScriptedCgs(["Invalid"], txid=None)
    run(lambda: client_for(cgs).put_event({"step": "x"}, event_id=None, scope=None))
    assert cgs.tx_polls() == []


def test_reads_use_cgs_paths_and_wait_for_nothing():
    cgs = ScriptedCgs(["Invalid"])
    client = client_for(cgs)
    assert run(lambda: client.consent("execution")) == {"status": "enabled"}
    assert run(lambda: client.document("d1")) == {"data": {"q": 1}}
    assert run(lambda: client.endorsed_cert({"publicKey": "PEM"})) == {"cert": "PEM"}
    sent = [(method, url.removeprefix(ROOT), body) for method, url, body in cgs.requests if "/attest/" not in url]
    assert [(m, u) for m, u, _ in sent] == [("POST", f"{PREFIX}/runtimeoptions/execution/status"),
                                            ("POST", f"{PREFIX}/memberdocuments/accepted/d1"),
                                            ("POST", f"{PREFIX}/ca/generateEndorsedCert")]
    consent, document, certificate = (body for _, _, body in sent)
    # As the reference's sidecar: a consent check carries the evidence alone; a release adds the key.
    assert set(consent) == {"platform", "attestation"}
    assert set(document) == {"platform", "attestation", "encrypt"}
    assert set(certificate) == {"data", "timestamp", "sign", "encrypt", "platform", "attestation"}
    room_pem = base64.b64decode(document["encrypt"]["publicKey"])
    serialization.load_pem_public_key(room_pem)
    assert cgs.tx_polls() == []
