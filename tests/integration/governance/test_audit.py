"""The audit trail: a step whose audit is not acknowledged does not run, signed writes cannot be
replayed, and `ccr governance events list` detects a tampered chain."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time

import httpx
import pytest

from sidecars.attestation import Evidence, MockPlatform, MockSnpProvider
from sidecars.cli import main as ccr
from sidecars.common.envelope import Attestation, RoomKey
from sidecars.common.errors import RemoteServiceError
from sidecars.common.governance_client import AuditNotAcknowledged, GovernanceClient
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.transports import tls_verify
from sidecars.governance.member_client import CgsMemberClient

from .conftest import ROOM_HOST_DATA, register_consortium, start_cgs


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_audited_step_does_not_run_when_the_governance_sidecar_is_down(tmp_path):
    ran = []
    gov = GovernanceClient(f"http://127.0.0.1:{_free_port()}", scope="launcher")
    with pytest.raises(AuditNotAcknowledged), gov.audited("launch", app="hello"):
        ran.append("launched")
    assert ran == []


def test_audited_step_does_not_run_when_cgs_does_not_acknowledge(tmp_path, server_tls, platform_dir, local_ca,
                                                                 governance):
    private = start_cgs(tmp_path / "cgs", server_tls, platform_dir)
    try:
        members = register_consortium(private, local_ca, tmp_path / "members", names=("alice",))
        contract_id = members.new_contract()
        gov = GovernanceClient(governance(contract_id, cgs_url=private.url), scope="launcher")
        with gov.audited("mount", volume="input"):
            pass
        private.proc.stop()
        ran = []
        with pytest.raises(AuditNotAcknowledged, match="does not proceed"), gov.audited("launch", app="hello"):
            ran.append("launched")
        assert ran == []
    finally:
        private.proc.stop()


def _room(evidence_url: str) -> tuple[RoomKey, Attestation]:
    key = RoomKey.generate()
    combined = httpx.post(f"{evidence_url}/attest/combined",
                          json={"runtime_data": base64.b64encode(key.public_pem).decode()}).json()
    Evidence.from_combined(combined)
    return key, Attestation(combined["evidence"], combined["endorsements"], combined["uvm_endorsements"])


def test_replayed_or_stale_signed_write_is_refused(consortium, cgs, local_ca, room_evidence):
    """The room signs the data bytes alone, as the reference does, so the timestamp beside them is unsigned: a
    replayer may put a fresh one on a captured write. CGS remembers every room signature it accepted."""
    contract_id = consortium.new_contract()
    key, attestation = _room(room_evidence())
    url = f"{cgs.url}/app/contracts/{contract_id}/events?scope=app"
    verify = tls_verify(str(local_ca.cert_file))
    body = key.signed_request(attestation, {"message": "step 1 done"})

    written = httpx.put(url, json=body, verify=verify)
    assert written.status_code == 204
    txid = written.headers["x-ms-ccf-transaction-id"]
    status = httpx.get(f"{cgs.url}/app/tx", params={"transaction_id": txid}, verify=verify).json()
    assert status == {"transaction_id": txid, "status": "Committed"}
    replay = httpx.put(url, json=body, verify=verify)
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "Replayed"
    redated = httpx.put(url, json=dict(body, timestamp=str(int(time.time() * 1000))), verify=verify)
    assert redated.status_code == 400 and redated.json()["error"]["code"] == "Replayed"

    stale = key.signed_request(attestation, {"message": "old"}, now_ms=int((time.time() - 300) * 1000))
    refused = httpx.put(url, json=stale, verify=verify)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "TimestampOutOfWindow"

    fresh = key.signed_request(attestation, {"message": "mine"})
    altered = dict(fresh, data=base64.b64encode(json.dumps({"message": "theirs"}).encode()).decode())
    assert httpx.put(url, json=altered, verify=verify).json()["error"]["code"] == "SignatureMismatch"

    other_key = RoomKey.generate()
    stolen = other_key.signed_request(attestation, {"message": "not bound to the report"})
    assert httpx.put(url, json=stolen, verify=verify).json()["error"]["code"] == "ReportDataMismatch"

    events, _ = consortium["alice"].events(contract_id)
    messages = [e["data"].get("message") for e in events if e["scope"] == "app"]
    assert messages == ["step 1 done"]


def test_room_without_uvm_endorsement_is_refused(consortium, cgs, local_ca, platform_dir):
    contract_id = consortium.new_contract()
    secret_id = consortium["alice"].put_secret(contract_id, "db-config", "top secret")
    key = RoomKey.generate()
    provider = MockSnpProvider(MockPlatform.load(platform_dir), host_data=ROOM_HOST_DATA, endorse_uvm=False)
    combined = provider.get_evidence(hashlib.sha256(key.public_pem).digest()).to_combined()
    attestation = Attestation(combined["evidence"], combined["endorsements"], combined["uvm_endorsements"])
    response = httpx.post(f"{cgs.url}/app/contracts/{contract_id}/secrets/{secret_id}",
                          json=key.request(attestation), verify=tls_verify(str(local_ca.cert_file)))
    assert response.status_code == 400 and "top secret" not in response.text
    assert response.json()["error"]["code"] == "VerifySnpAttestationFailed"
    assert "not endorsed" in response.json()["error"]["message"]


def test_non_member_request_is_refused(consortium, local_ca, tmp_path):
    stranger = MemberIdentity.create(tmp_path / "mallory", "mallory")
    with CgsMemberClient(consortium["alice"].endpoint, stranger, ca_bundle=str(local_ca.cert_file)) as client, \
            pytest.raises(RemoteServiceError, match="refused member mallory's certificate"):
        client.put_contract("mallory-contract", {"x": 1})


def _events_cli(cgs, ca, identity_dir, contract_id, capsys) -> tuple[int, str]:
    code = ccr(["governance", "events", "list", contract_id, "--cgs", cgs.url, "--ca-bundle", str(ca.cert_file),
                "--identity", str(identity_dir)])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("tamper", ["alter", "remove", "truncate"])
def test_tampered_audit_chain_is_detected_by_ccr_governance_events(tmp_path, server_tls, platform_dir,
                                                                   local_ca, room_evidence, capsys, tamper):
    private = start_cgs(tmp_path / "cgs", server_tls, platform_dir)
    try:
        members = register_consortium(private, local_ca, tmp_path / "members", names=("alice",))
        contract_id = members.new_contract()
        key, attestation = _room(room_evidence())
        for step in range(3):
            response = httpx.put(f"{private.url}/app/contracts/{contract_id}/events?scope=app",
                                 json=key.signed_request(attestation, {"step": step}),
                                 verify=tls_verify(str(local_ca.cert_file)))
            assert response.status_code == 204
        code, out = _events_cli(private, local_ca, tmp_path / "members" / "alice", contract_id, capsys)
        assert code == 0, out
        assert "intact" in out and '{"step":1}' in out
        alice = members["alice"]
        # CGS's paging: a page spans max_seqno_per_page + 1 seqnos, and the next link goes on from there.
        first = alice.request("GET", f"/app/contracts/{contract_id}/events?from_seqno=1&max_seqno_per_page=2"
                                     "&chain=true")
        assert [e["seqno"] for e in first["value"]] == [1, 2, 3] and "from_seqno=4" in first["nextLink"]
        assert alice.events(contract_id, page_size=2) == alice.events(contract_id)
        # CGS's defaults: the events of the contract's id in the given scope (none given: the unscoped ones).
        scoped = alice.request("GET", f"/app/contracts/{contract_id}/events?from_seqno=1&scope=app")["value"]
        assert [e["data"] for e in scoped] == [{"step": 0}, {"step": 1}, {"step": 2}]
        assert {(e["id"], e["scope"]) for e in scoped} == {(contract_id, "app")}
        assert alice.request("GET", f"/app/contracts/{contract_id}/events?from_seqno=1")["value"] == []

        private.proc.stop()
        # Whoever holds the state directory edits the stored log directly, as an operator could.
        with sqlite3.connect(private.state_dir / "cgs.db") as db:
            target = db.execute("SELECT seqno FROM events WHERE contract = ? AND data = ?",
                                (contract_id, '{"step": 1}')).fetchone()[0]
            if tamper == "alter":
                db.execute("UPDATE events SET data = ? WHERE contract = ? AND seqno = ?",
                           ('{"step": 7}', contract_id, target))
            elif tamper == "remove":
                db.execute("DELETE FROM events WHERE contract = ? AND seqno = ?", (contract_id, target))
            else:
                db.execute("DELETE FROM events WHERE contract = ? AND seqno >= ?", (contract_id, target))
        private.restart()

        code, out = _events_cli(private, local_ca, tmp_path / "members" / "alice", contract_id, capsys)
        assert code == 1
        assert "TAMPERED" in out and "BROKEN" in out
    finally:
        private.proc.stop()


def test_cli_one_line_error_without_identity(capsys):
    code = ccr(["governance", "events", "list", "x", "--cgs", "https://127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("ccr: error: no member identity")
