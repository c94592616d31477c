"""Key releases are on the contract's audit log in CGS: skr records a release through the governance sidecar
before it asks Key Vault and after it got the key, and hands out no key that CGS did not acknowledge."""

from __future__ import annotations

import json
import socket
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from azure.keyvault.keys import JsonWebKey, KeyReleasePolicy

from sidecars.common.auditchain import verify_chain
from sidecars.common.jose import b64url_encode
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.process import ManagedProcess
from sidecars.common.release_policy import sevsnp_policy
from sidecars.governance.member_client import CgsMemberClient, join

from .conftest import HOST_DATA, REPO, Room, Skr, start_skr

TOKEN = "audit-test-sidecar-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_governance(room: Room, name: str, port: int, contract_id: str, cgs_endpoint: str, skr_url: str,
                      token_file: Path) -> ManagedProcess:
    ready = room.run_dir / f"{name}.ready.json"
    return ManagedProcess(name, [sys.executable, "-m", "sidecars.governance", "--port", str(port), "--ready-file",
                                 str(ready), "--cgs-endpoint", cgs_endpoint, "--contract-id", contract_id,
                                 "--cgs-ca-bundle", room.endpoints["ca_bundle"], "--skr-url", skr_url,
                                 "--consent-poll-interval", "0", "--subscriber-url", "http://127.0.0.1:9/unused",
                                 "--sidecar-token-file", str(token_file)],
                          ready=ready.exists, ready_timeout=30, log_path=room.run_dir / "logs" / f"{name}.log",
                          cwd=REPO).start()


def _released_key(room: Room) -> tuple[str, bytes]:
    """A fresh oct key the room may have, so the Key Vault log tells whether this test released it."""
    policy = KeyReleasePolicy(json.dumps(sevsnp_policy(room.endpoints["maa_endpoint"], HOST_DATA,
                                                       accept_mock_uvm=True)).encode())
    name, material = f"audited-{uuid.uuid4().hex[:8]}", uuid.uuid4().bytes + uuid.uuid4().bytes
    room.keys.import_key(name, JsonWebKey(kty="oct-HSM", k=material), exportable=True, release_policy=policy)
    return name, material


@pytest.fixture(scope="module")
def member(room, tmp_path_factory) -> CgsMemberClient:
    base = tmp_path_factory.mktemp("skr-audit-members")
    identity = MemberIdentity.create(base / "alice", "alice")
    operator = MemberIdentity.load(Path(room.endpoints["cgs_operator_dir"]))
    client = CgsMemberClient(room.endpoints["cgs_endpoint"], identity, ca_bundle=room.endpoints["ca_bundle"])
    with CgsMemberClient(room.endpoints["cgs_endpoint"], operator, ca_bundle=room.endpoints["ca_bundle"]) as op:
        join(op, [client])
    yield client
    client.close()


def _accepted_contract(member: CgsMemberClient) -> str:
    contract_id = f"skr-audit-{uuid.uuid4().hex[:8]}"
    member.put_contract(contract_id, {"purpose": "audited key release"})
    for propose in (lambda: member.propose_contract(contract_id),
                    lambda: member.propose_policy(contract_id, {"x-ms-sevsnpvm-hostdata": [HOST_DATA]})):
        assert member.vote(propose()["proposalId"])["proposalState"] == "Accepted"
    return contract_id


def _audited_skr(room: Room, name: str, contract_id: str, cgs_endpoint: str, tmp_path: Path
                 ) -> tuple[Skr, ManagedProcess]:
    token_file = tmp_path / f"{name}-token"
    token_file.write_text(TOKEN)
    port = _free_port()
    skr = start_skr(room, name, "--host-data", HOST_DATA, "--governance-url", f"http://127.0.0.1:{port}",
                    "--sidecar-token-file", str(token_file))
    try:
        governance = _start_governance(room, f"{name}-governance", port, contract_id, cgs_endpoint, skr.url,
                                       token_file)
    except BaseException:
        skr.process.stop()
        raise
    return skr, governance


def _release(skr: Skr, room: Room, kid: str) -> httpx.Response:
    return httpx.post(f"{skr.url}/key/release", timeout=60, json={
        "maa_endpoint": room.endpoints["maa_endpoint"], "akv_endpoint": room.endpoints["keyvault_url"], "kid": kid})


def _keyvault_released(room: Room, name: str) -> bool:
    return f"key {name}/" in "\n".join(line for line in (room.run_dir / "logs" / "keyvault.log").read_text()
                                       .splitlines() if "released to attested caller" in line)


def test_a_release_is_on_the_contracts_audit_log_without_key_material(room, member, tmp_path):
    contract_id = _accepted_contract(member)
    name, material = _released_key(room)
    skr, governance = _audited_skr(room, "skr-audited", contract_id, room.endpoints["cgs_endpoint"], tmp_path)
    try:
        answer = _release(skr, room, name)
        assert answer.status_code == 200, answer.text
        assert json.loads(answer.json()["key"])["k"] == b64url_encode(material)
    finally:
        skr.process.stop()
        governance.stop()

    events, head = member.events(contract_id)
    assert verify_chain(events, head) == []
    releases = [e for e in events if e["scope"] == "skr" and e["data"].get("event") == "key_release"]
    assert [e["data"]["phase"] for e in releases] == ["requested", "released"]
    requested, released = (e["data"] for e in releases)
    version = room.keys.get_key(name).properties.version
    assert requested["key"] == name and requested["vault"] == room.endpoints["keyvault_url"].rstrip("/")
    assert released["kid"].endswith(f"/keys/{name}/{version}") and released["kty"] == "oct-HSM"
    assert released["room"]["hostData"] == HOST_DATA and released["room"]["debuggable"] is False
    assert released["maa"] == room.endpoints["maa_endpoint"].rstrip("/")
    # CGS accepted the records only from an envelope attested against the contract's policy (HOST_DATA).
    text = json.dumps(events)
    assert not any(form in text for form in (b64url_encode(material), material.hex()))


def test_no_key_is_released_when_cgs_cannot_record_it(room, member, tmp_path):
    contract_id = _accepted_contract(member)
    name, material = _released_key(room)
    dead_cgs = f"https://127.0.0.1:{_free_port()}"
    skr, governance = _audited_skr(room, "skr-unaudited", contract_id, dead_cgs, tmp_path)
    try:
        answer = _release(skr, room, name)
        log = skr.log()
    finally:
        skr.process.stop()
        governance.stop()
    assert answer.status_code == 503, answer.text
    assert "audit write not acknowledged" in answer.json()["error"]
    # Refused before Key Vault was asked: the key never left the vault.
    assert not _keyvault_released(room, name)
    assert not any(form in answer.text + log for form in (b64url_encode(material), material.hex()))


def test_skr_without_the_sidecar_token_cannot_pass_for_skr(room, member, tmp_path):
    """The app reaches governance too: without the sidecars' token its writes land under scope 'app', so it
    cannot forge (or pre-empt) skr's release records."""
    contract_id = _accepted_contract(member)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port = _free_port()
    skr = start_skr(room, "skr-for-forgery", "--host-data", HOST_DATA)
    try:
        governance = _start_governance(room, "forgery-governance", port, contract_id,
                                       room.endpoints["cgs_endpoint"], skr.url, token_file)
        try:
            forged = httpx.put(f"http://127.0.0.1:{port}/events", params={"scope": "skr"},
                               json={"event": "key_release", "phase": "released", "key": "fake"}, timeout=30)
            assert forged.status_code == 204
        finally:
            governance.stop()
    finally:
        skr.process.stop()
    events, _ = member.events(contract_id)
    forged_events = [e for e in events if e["data"].get("key") == "fake"]
    assert [e["scope"] for e in forged_events] == ["app"]
