"""The room's side of the wire against the CGS stand-in, in process: writes signed as the reference signs them
(the decoded `data` bytes), replays refused even with a fresh timestamp and after a restart, transaction ids
on every committed write and their status at `/app/tx` and `/gov/tx`, and the older room paths gone."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi import FastAPI

from sidecars.common.envelope import PSS, Attestation, RoomKey, attested
from sidecars.common.memberauth import MemberIdentity
from sidecars.emulators.cgs import db
from sidecars.emulators.cgs.app import build_app
from sidecars.emulators.cgs.audit import AuditLog
from sidecars.emulators.cgs.ca import generate_ca_key
from sidecars.emulators.cgs.deps import CgsConfig
from sidecars.emulators.cgs.issuer import OidcIssuer
from sidecars.emulators.cgs.store import Store

HOST_DATA = "aa" * 32
CONTRACT = "c1"


def _claims_from_evidence(attestation: dict[str, Any]) -> dict[str, Any]:
    """A stand-in for SNP verification: the test's 'evidence' is the REPORT_DATA it claims, in hex."""
    return {"x-ms-sevsnpvm-reportdata": attestation["evidence"], "x-ms-sevsnpvm-hostdata": HOST_DATA}


def _attestation(key: RoomKey) -> Attestation:
    return Attestation(key.report_data.hex(), "", "")


@dataclass
class Stand:
    """An in-process stand-in over one database file; `restart()` opens a new one on the same file."""

    directory: Path
    member: MemberIdentity
    app: FastAPI | None = None
    database: db.Database | None = None

    def start(self) -> None:
        self.database = db.Database(self.directory / "cgs.db")
        issuer = OidcIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "https://cgs/oidc")
        self.app = build_app(Store(self.database), AuditLog(self.database), _claims_from_evidence, issuer,
                             self.member.cert, CgsConfig(replay_window_s=60))

    def restart(self) -> None:
        assert self.database is not None
        self.database.close()
        self.start()

    @property
    def store(self) -> Store:
        assert self.app is not None
        return self.app.state.cgs.store

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        assert self.app is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="https://cgs") as client:
            return await client.request(method, path, json=body)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def stand(tmp_path) -> Iterator[Stand]:
    member = MemberIdentity.create(tmp_path / "m", "m")
    stand = Stand(tmp_path, member)
    stand.start()
    store = stand.store
    store.add_member(member.member_id, "m", member.cert_pem)
    store.put_contract(CONTRACT, {}, None)
    for actions in ([{"name": "set_contract", "args": {"contractId": CONTRACT,
                                                      "contract": store.contract_view(CONTRACT)}}],
                    [{"name": "set_clean_room_policy", "args": {"contractId": CONTRACT, "type": "add",
                                                               "claims": {"x-ms-sevsnpvm-hostdata": [HOST_DATA]}}}],
                    [{"name": "enable_ca", "args": {"contractId": CONTRACT}}]):
        store.vote(store.create_proposal(member.member_id, actions)["proposalId"], member.member_id, True)
    generate_ca_key(store, CONTRACT)
    yield stand
    assert stand.database is not None
    stand.database.close()


EVENTS = f"/app/contracts/{CONTRACT}/events"


def _app_events(stand: Stand) -> list[Any]:
    return [e["data"] for e in stand.app.state.cgs.audit.events(CONTRACT) if e["scope"] == "app"]


def test_the_room_signs_the_decoded_data_bytes_with_pss_sha256_and_a_32_byte_salt():
    """What the reference's `Signing.SignData` signs and CGS's `verifySignature` checks: the data bytes alone.
    The timestamp rides beside them unsigned."""
    key = RoomKey.generate()
    body = key.signed_request(_attestation(key), {"event": "x", "n": 1}, now_ms=1_700_000_000_000)
    data = base64.b64decode(body["data"])
    assert data == b'{"event":"x","n":1}'
    signature = base64.b64decode(body["sign"]["signature"])
    public = serialization.load_pem_public_key(base64.b64decode(body["sign"]["publicKey"]))
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20),
                      hashes.SHA256())
    assert body["encrypt"]["publicKey"] == body["sign"]["publicKey"] and body["platform"] == "snp-caci"
    assert body["timestamp"] == "1700000000000"
    # PSS is randomised: signing the same write again gives another signature (the replay check relies on it).
    again = key.signed_request(_attestation(key), {"event": "x", "n": 1}, now_ms=1_700_000_000_000)
    assert again["data"] == body["data"] and again["sign"]["signature"] != body["sign"]["signature"]


@pytest.mark.anyio
async def test_a_signed_event_commits_with_a_transaction_id_whose_status_is_committed(stand):
    key = RoomKey.generate()
    first = await stand.call("PUT", EVENTS + "?scope=app", key.signed_request(_attestation(key), {"step": 1}))
    second = await stand.call("PUT", EVENTS + "?scope=app", key.signed_request(_attestation(key), {"step": 2}))
    assert first.status_code == second.status_code == 204
    view1, seqno1 = first.headers["x-ms-ccf-transaction-id"].split(".")
    view2, seqno2 = second.headers["x-ms-ccf-transaction-id"].split(".")
    assert view1 == view2 == "2" and int(seqno2) > int(seqno1)
    for endpoint in ("/app/tx", "/gov/tx"):
        answer = await stand.call("GET", f"{endpoint}?transaction_id=2.{seqno2}")
        assert answer.json() == {"transaction_id": f"2.{seqno2}", "status": "Committed"}
        assert (await stand.call("GET", f"{endpoint}?transaction_id=2.{int(seqno2) + 1}")).json()["status"] == "Unknown"
        # Seqno 1 was committed in view 2: the same seqno in any other view was not.
        assert (await stand.call("GET", f"{endpoint}?transaction_id=1.1")).json()["status"] == "Invalid"
        assert (await stand.call("GET", f"{endpoint}?transaction_id=3.1")).json()["status"] == "Invalid"
        assert (await stand.call("GET", f"{endpoint}?transaction_id=3.{int(seqno2) + 1}")).json()["status"] == "Unknown"
    assert _app_events(stand) == [{"step": 1}, {"step": 2}]


@pytest.mark.anyio
@pytest.mark.parametrize("query", ["", "?transaction_id=", "?transaction_id=2", "?transaction_id=2.x",
                                   "?transaction_id=-1.3", "?transaction_id=2.3.4", "?transaction_id=%D9%A2.1",
                                   "?transaction_id=2.1%0A", "?transaction_id=" + "9" * 30 + ".1"])
async def test_a_malformed_transaction_id_is_a_400_in_ccf_shape(stand, query):
    for endpoint in ("/app/tx", "/gov/tx"):
        answer = await stand.call("GET", endpoint + query)
        assert answer.status_code == 400, query
        assert answer.json()["error"]["code"] == "InvalidQueryParameterValue"
        assert len(answer.json()["error"]["message"]) < 200


@pytest.mark.anyio
async def test_transaction_ids_only_grow_across_a_restart(stand):
    key = RoomKey.generate()
    before = await stand.call("PUT", EVENTS + "?scope=app", key.signed_request(_attestation(key), {"step": 1}))
    seqno = int(before.headers["x-ms-ccf-transaction-id"].split(".")[1])
    stand.restart()
    assert (await stand.call("GET", f"/app/tx?transaction_id=2.{seqno}")).json()["status"] == "Committed"
    after = await stand.call("PUT", EVENTS + "?scope=app", key.signed_request(_attestation(key), {"step": 2}))
    assert int(after.headers["x-ms-ccf-transaction-id"].split(".")[1]) > seqno


@pytest.mark.anyio
async def test_reads_and_refused_writes_name_no_transaction(stand):
    key = RoomKey.generate()
    consent = await stand.call("POST", f"/app/contracts/{CONTRACT}/runtimeoptions/execution/status",
                               attested(_attestation(key)))
    assert consent.status_code == 200 and "x-ms-ccf-transaction-id" not in consent.headers
    refused = await stand.call("PUT", EVENTS, {"sign": {}})
    assert refused.status_code == 400 and "x-ms-ccf-transaction-id" not in refused.headers


@pytest.mark.anyio
async def test_a_captured_write_replayed_is_refused_however_it_is_dressed(stand):
    """The timestamp is not signed, so a replayer may put a fresh one on a captured write, send it to another
    event id, scope or contract, or wait for a restart: every accepted signature is remembered, in the
    database, and refused a second time."""
    key = RoomKey.generate()
    captured = key.signed_request(_attestation(key), {"step": "mount input"})
    assert (await stand.call("PUT", EVENTS + "?scope=app", captured)).status_code == 204

    exact = await stand.call("PUT", EVENTS + "?scope=app", captured)
    fresh_time = await stand.call("PUT", EVENTS + "?scope=app",
                                  {**captured, "timestamp": str(int(time.time() * 1000) + 5)})
    elsewhere = await stand.call("PUT", EVENTS + "?scope=launcher&id=other", captured)
    stand.store.put_contract("c2", {}, None)
    other_contract = await stand.call("PUT", "/app/contracts/c2/events?scope=app", captured)
    stand.restart()
    after_restart = await stand.call("PUT", EVENTS + "?scope=app",
                                     {**captured, "timestamp": str(int(time.time() * 1000))})
    for answer in (exact, fresh_time, elsewhere, after_restart):
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "Replayed", answer.text
    # c2 has no policy: refused before its signature is looked at.
    assert other_contract.status_code == 400
    assert _app_events(stand) == [{"step": "mount input"}]
    assert [e for e in stand.app.state.cgs.audit.events(CONTRACT) if e["scope"] == "launcher"] == []
    # The room itself loses nothing: the same event signed again is a new write.
    again = key.signed_request(_attestation(key), {"step": "mount input"})
    assert (await stand.call("PUT", EVENTS + "?scope=app", again)).status_code == 204


@pytest.mark.anyio
async def test_forged_room_writes_are_refused(stand):
    key = RoomKey.generate()
    attestation = _attestation(key)
    body = key.signed_request(attestation, {"step": "honest"})

    altered = {**body, "data": base64.b64encode(b'{"step":"forged"}').decode()}
    # What this room signed before (the timestamp with the data) is not what CGS verifies.
    old_style = dict(body)
    old_message = f"{body['timestamp']}.{body['data']}".encode()
    old_style["sign"] = {**body["sign"], "signature": base64.b64encode(key._key.sign(old_message, PSS,
                                                                                    hashes.SHA256())).decode()}
    mallory = RoomKey.generate()
    own_key = mallory.signed_request(attestation, {"step": "not the attested key"})
    stale = key.signed_request(attestation, {"step": "late"}, now_ms=int((time.time() - 300) * 1000))
    huge = {**key.signed_request(attestation, {"step": "far"}), "timestamp": "99999999999999"}
    missing = {k: v for k, v in key.signed_request(attestation, {"step": "x"}).items() if k != "timestamp"}
    expected = [(altered, "SignatureMismatch"), (old_style, "SignatureMismatch"), (own_key, "ReportDataMismatch"),
                (stale, "TimestampOutOfWindow"), (huge, "TimestampTooLarge"), (missing, "TimestampMissing")]
    for forged, code in expected:
        answer = await stand.call("PUT", EVENTS + "?scope=app", forged)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code, (code, answer.text)
    assert _app_events(stand) == []
    # A refused request did not use up its signature: the honest write still goes through once.
    assert (await stand.call("PUT", EVENTS + "?scope=app", body)).status_code == 204


@pytest.mark.anyio
async def test_generate_endorsed_cert_answers_the_certificate_alone(stand):
    key = RoomKey.generate()
    leaf = ec.generate_private_key(ec.SECP256R1())
    public_pem = leaf.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    answer = await stand.call("POST", f"/app/contracts/{CONTRACT}/ca/generateEndorsedCert",
                              key.signed_request(_attestation(key), {"publicKey": public_pem,
                                                                     "subjectName": "CN=room",
                                                                     "validityPeriodDays": 2}))
    assert answer.status_code == 200, answer.text
    endorsed = json.loads(key.unwrap(answer.json()["value"]))
    assert set(endorsed) == {"cert"}
    cert = x509.load_pem_x509_certificate(endorsed["cert"].encode())
    ca = x509.load_pem_x509_certificate(stand.store.state.ca[CONTRACT]["cert"].encode())
    cert.verify_directly_issued_by(ca)


@pytest.mark.anyio
@pytest.mark.parametrize("path", [f"/app/contracts/{CONTRACT}/consentcheck/execution",
                                  f"/app/contracts/{CONTRACT}/acceptedMemberDocuments/d1"])
async def test_the_older_room_paths_are_gone_as_on_cgs(stand, path):
    key = RoomKey.generate()
    answer = await stand.call("POST", path, key.request(_attestation(key)))
    assert answer.status_code == 404


@pytest.mark.anyio
async def test_a_consent_check_needs_only_the_evidence(stand):
    key = RoomKey.generate()
    answer = await stand.call("POST", f"/app/contracts/{CONTRACT}/runtimeoptions/execution/status",
                              attested(_attestation(key)))
    assert answer.status_code == 200 and answer.json()["status"] == "enabled"
    stranger = RoomKey.generate()
    outside = Attestation(stranger.report_data.hex(), "", "")
    stand.app.state.cgs.rooms.verify_attestation = lambda a: {**_claims_from_evidence(a),
                                                                "x-ms-sevsnpvm-hostdata": "bb" * 32}
    stand.app.state.cgs.rooms._claims_cache.clear()
    refused = await stand.call("POST", f"/app/contracts/{CONTRACT}/runtimeoptions/execution/status",
                               attested(outside))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "VerifySnpAttestationFailed"


@pytest.mark.anyio
async def test_a_write_that_does_not_commit_names_no_transaction(stand, monkeypatch):
    """The seqno is bumped inside the write's own SQLite transaction: a write rolled back (a full disk) hands
    out no id and uses up no seqno; only what committed (the request's signature record) did."""
    key = RoomKey.generate()
    before = stand.database.committed_seqno

    def disk_full(*_args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(db, "insert_events", disk_full)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stand.app, raise_app_exceptions=False),
                                 base_url="https://cgs") as client:
        failed = await client.put(EVENTS + "?scope=app", json=key.signed_request(_attestation(key), {"step": 1}))
    assert failed.status_code >= 500 and "x-ms-ccf-transaction-id" not in failed.headers
    monkeypatch.undo()
    # Only the signature record committed (the request used its signature up; the room signs afresh).
    assert stand.database.committed_seqno == before + 1
    assert (await stand.call("GET", f"/app/tx?transaction_id=2.{before + 2}")).json()["status"] == "Unknown"
    done = await stand.call("PUT", EVENTS + "?scope=app", key.signed_request(_attestation(key), {"step": 1}))
    # Its signature record (before + 2), then its event (before + 3): the answer names the last.
    assert done.headers["x-ms-ccf-transaction-id"] == f"2.{before + 3}" == f"2.{stand.database.committed_seqno}"
    assert _app_events(stand) == [{"step": 1}]
