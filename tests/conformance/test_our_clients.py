"""Our clients, recorded on the wire and checked against the reference's requests.

The member's side is driven through the `ccr governance` commands a member types (in-process, so the recorder
sees every request); the room's side through `CgsRoomClient` on a mock SEV-SNP room. Every request they send to
the stand-in must be one the reference sends (`vectors.match`) and look like it (`recorder.wire_problems`):
api-version on `/gov`, COSE envelopes with the right headers and a signature that verifies with the kid's
certificate, the standard ballot texts, the room's RSA-PSS signature over the data bytes, the commit wait —
and no legacy `CCR-Member` header or path anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sidecars import cli
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.governance.cgs_client import CgsRoomClient
from tests.conformance import vectors
from tests.conformance.conftest import Consortium, StandIn, start_standin
from tests.conformance.recorder import Exchange, Recorder, wire_problems

PROPOSAL_LINE = re.compile(r"proposal ([0-9a-f]{64})")


def check_all(exchanges: list[Exchange], wires: tuple[vectors.Wire, ...],
              signer_certs: dict[str, x509.Certificate]) -> set[str]:
    """Every exchange matched to a reference request and checked; returns the ids of the requests seen."""
    problems, seen = [], set()
    for index, exchange in enumerate(exchanges):
        wire = vectors.match(exchange.method, exchange.path, wires)
        if wire is None:
            problems.append(f"{exchange}: the reference sends no such request")
            continue
        seen.add(wire.id)
        problems += [f"{exchange} ({wire.id}): {p}" for p in
                     wire_problems(exchange, wire, signer_certs=signer_certs, following=exchanges[index + 1:])]
    assert not problems, "\n".join(problems)
    return seen


def certs_of(*directories: Path) -> dict[str, x509.Certificate]:
    certs = {}
    for directory in directories:
        cert = x509.load_pem_x509_certificate((directory / "member.pem").read_bytes())
        certs[hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()] = cert
    return certs


class Ccr:
    """`ccr governance …` in this process, connected to the stand-in."""

    def __init__(self, standin: StandIn, capsys):
        self.standin, self.capsys = standin, capsys

    def __call__(self, *argv: str, identity: Path | None = None, connect: bool = True) -> str:
        args = ["governance", *argv]
        if connect:
            args += ["--cgs", self.standin.url, "--ca-bundle", self.standin.ca_file]
        if identity is not None:
            args += ["--identity", str(identity)]
        code = cli.main(args)
        out, err = self.capsys.readouterr()
        assert code == 0, f"ccr {' '.join(args)} → {code}\n{out}\n{err}"
        return out

    def proposal_id(self, output: str) -> str:
        found = PROPOSAL_LINE.search(output)
        assert found, output
        return found.group(1)


@pytest.fixture
def own_standin(tmp_path, conformance_ca):
    """A stand-in of the test's own: the members the CLI makes must not join the module's consortium (every
    active member would then have to vote on its proposals)."""
    standin = start_standin(tmp_path / "standin", conformance_ca)
    yield standin
    standin.proc.stop()


def test_member_cli_speaks_the_reference_wire(own_standin, tmp_path, capsys):
    standin = own_standin
    ccr = Ccr(standin, capsys)
    members = {name: tmp_path / name for name in ("alice", "bob")}
    operator = standin.state_dir / "operator"
    recorder = Recorder()
    with recorder.recording():
        for name, directory in members.items():
            ccr("member", "create", name, "-o", str(directory), connect=False)
        # The first member is accepted at once (no active member yet); the second once alice accepted it.
        ccr("member", "register", str(members["alice"]), "--operator", str(operator))
        joining = ccr.proposal_id(ccr("member", "register", str(members["bob"]), "--operator", str(operator)))
        ccr("proposal", "vote", joining, identity=members["alice"])
        ccr("member", "activate", identity=members["bob"])
        ccr("member", "list", identity=members["alice"])
        contract = "conformance-contract"
        ccr("contract", "create", contract, "--data", '{"purpose": "conformance"}', identity=members["alice"])
        ccr("contract", "show", contract, identity=members["bob"])
        proposal = ccr.proposal_id(ccr("contract", "propose", contract, identity=members["alice"]))
        ccr("proposal", "show", proposal, identity=members["bob"])
        ccr("proposal", "vote", proposal, identity=members["bob"])
        ccr("policy", "set", contract, "--host-data", "ab" * 32, identity=members["alice"])
        ccr("policy", "show", contract, identity=members["bob"])
        ccr("consent", "disable", contract, identity=members["bob"])
        ccr("consent", "enable", contract, identity=members["bob"])
        ccr("consent", "status", contract, identity=members["alice"])
        ccr("logging", "disable", contract, identity=members["alice"])
        ccr("telemetry", "status", contract, identity=members["alice"])
        ca = ccr.proposal_id(ccr("ca", "enable", contract, identity=members["alice"]))
        ccr("proposal", "vote", ca, identity=members["bob"])
        ccr("ca", "show", contract, identity=members["alice"])
        ccr("document", "put", "conformance-doc", "--contract", contract, "--data", '{"q": 1}',
            identity=members["alice"])
        ccr("document", "propose", "conformance-doc", identity=members["alice"])
        ccr("events", "list", contract, identity=members["bob"])
    exchanges = recorder.to(standin.url)
    seen = check_all(exchanges, vectors.CLIENT + vectors.TRANSACTIONS, certs_of(operator, *members.values()))
    expected = {"gov.proposal.create", "gov.ballot.submit", "gov.statedigest.update", "gov.statedigest.ack",
                "gov.members.list", "gov.proposal.get", "app.contract.put", "app.contract.get",
                "app.execution.enable", "app.execution.disable", "app.option.status", "app.policy.get",
                "app.document.put", "app.document.get", "app.events.get", "tx.gov", "tx.app"}
    assert expected <= seen, f"not exercised: {sorted(expected - seen)}"


# -- the room's side ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def room_skr(platform_dir, tmp_path_factory):
    """An skr sidecar on the mock platform: the room's evidence, HOST_DATA fixed."""
    run = tmp_path_factory.mktemp("skr")
    host_data = hashlib.sha256(b"conformance room").hexdigest()
    ready = run / "skr.ready"
    proc = ManagedProcess("skr", [sys.executable, "-m", "sidecars.skr", "--port", "0", "--platform", "mock",
                                  "--mock-platform-dir", str(platform_dir), "--host-data", host_data,
                                  "--ready-file", str(ready)],
                          ready=file_exists(ready), ready_timeout=30, log_path=run / "skr.log")
    proc.start()
    yield json.loads(ready.read_text())["url"], host_data
    proc.stop()


def accepted_room_contract(consortium: Consortium, host_data: str) -> dict[str, Any]:
    """A contract the room may run, set up with the reference's own requests: draft, contract, policy, CA with its
    signing key, the OIDC issuer with its key, a secret and an accepted document."""
    alice = consortium["alice"]
    contract_id = f"room-{hashlib.sha256(host_data.encode()).hexdigest()[:8]}-{id(consortium)}"
    assert alice.app("PUT", f"/app/contracts/{contract_id}", {"version": "", "data": {"room": 1}}).status_code == 200
    draft = alice.app("POST", f"/app/contracts/{contract_id}").json()
    consortium.accept(alice.propose({"name": "set_contract", "args": {"contractId": contract_id, "contract": draft}}))
    # actions.js: a clean room policy can only be proposed once the contract is accepted.
    consortium.accept(alice.propose({"name": "set_clean_room_policy", "args": {
        "contractId": contract_id, "type": "add",
        "claims": {"x-ms-sevsnpvm-hostdata": [host_data], "x-ms-sevsnpvm-is-debuggable": False}}}))
    consortium.accept(alice.propose({"name": "enable_ca", "args": {"contractId": contract_id}}))
    generated = alice.app("POST", f"/app/contracts/{contract_id}/ca/generateSigningKey")
    assert generated.status_code == 200, generated.text
    # The OIDC issuer that signs the room's tokens: enabled by proposal, then its key generated (once per CGS).
    if alice.app("POST", "/app/oidc/issuerInfo").json().get("enabled") is not True:
        consortium.accept(alice.propose({"name": "enable_oidc_issuer", "args": {"kid": "conformance"}}))
    generated = alice.app("POST", "/app/oidc/generateSigningKey")
    assert generated.status_code == 200, generated.text
    secret = alice.app("PUT", f"/app/contracts/{contract_id}/secrets/db", {"value": "s3cret"})
    assert secret.status_code == 200, secret.text
    document = f"doc-{contract_id}"
    alice.app("PUT", f"/app/memberdocuments/{document}", {"version": "", "contractId": contract_id,
                                                          "data": {"q": 1}})
    shown = alice.app("GET", f"/app/memberdocuments/{document}").json()
    consortium.accept(alice.propose({"name": "set_member_document", "args": {"documentId": document,
                                                                             "document": shown}}))
    return {"contractId": contract_id, "secretId": secret.json()["secretId"], "documentId": document}


def test_room_client_speaks_the_reference_wire(standin, consortium, room_skr):
    skr_url, host_data = room_skr
    room = accepted_room_contract(consortium, host_data)
    recorder = Recorder()
    cert_key = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    async def act() -> None:
        client = CgsRoomClient(standin.url, room["contractId"], skr_url=skr_url, ca_bundle=standin.ca_file)
        try:
            for option in ("execution", "logging", "telemetry"):
                assert "status" in await client.consent(option)
            await client.put_event({"message": "conformance"}, event_id="room", scope="app")
            assert await client.secret(room["secretId"]) == "s3cret"
            assert (await client.document(room["documentId"]))["contractId"] == room["contractId"]
            issued = await client.endorsed_cert({"publicKey": cert_key, "subjectName": "CN=room",
                                                 "subjectAlternateNames": ["dNSName:room.local"],
                                                 "validityPeriodDays": 1})
            assert "BEGIN CERTIFICATE" in issued["cert"]
            assert await client.token(sub=room["contractId"], tenant_id="t", aud="api://AzureADTokenExchange")
        finally:
            await client.close()

    with recorder.recording():
        asyncio.run(act())
    seen = check_all(recorder.to(standin.url), vectors.ROOM + vectors.TRANSACTIONS, {})
    expected = {"room.option.status", "room.events.put", "room.secret.get", "room.document.accepted",
                "room.ca.endorsedcert", "room.oauth.token", "tx.app"}
    assert expected <= seen, f"not exercised: {sorted(expected - seen)}"


def test_recorder_catches_the_legacy_wire(standin, tmp_path):
    """The checker itself: a request in the old scheme (CCR-Member header, old vote body, no api-version) is
    reported, so a pass above means something."""
    legacy = MemberIdentity.create(tmp_path / "legacy", "legacy")
    body = json.dumps({"ballot": "accept"}).encode()
    target = f"/gov/members/proposals/{'a' * 64}/ballots/{legacy.member_id}:submit"
    request = httpx.Request("POST", standin.url + target, content=body, headers={
        "authorization": legacy.authorization("POST", target, body), "content-type": "application/json"})
    exchange = Exchange(request, httpx.Response(401, json={"error": {"code": "Unauthorized", "message": "x"}}))
    wire = vectors.match("POST", target)
    assert wire is not None and wire.id == "gov.ballot.submit"
    problems = wire_problems(exchange, wire, signer_certs={}, following=[])
    assert any("CCR-Member" in p for p in problems)
    assert any("api-version" in p for p in problems)
    assert any("application/cose" in p for p in problems)
    assert vectors.match("POST", "/app/contracts/c/consentcheck/execution", vectors.ROOM) is None
