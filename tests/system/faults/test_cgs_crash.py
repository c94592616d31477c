"""The CGS stand-in keeps every write it acknowledged through `kill -9`.

A client makes 1 000 writes of mixed kinds (room audit events, proposals and ballots, consent changes,
secrets, member documents, contracts) against the real stand-in process; at seeded random points a timer
SIGKILLs the process while a request is in flight, and the client restarts it on the same state directory.
At the end every write that was answered 2xx must be there, with the audit record each member write makes,
and the audit chains must verify end to end with the verifier `ccr governance events list` uses. Writes that
were never answered may or may not have happened: only what the stand-in promised is checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecars.attestation import MockPlatform, MockSnpProvider
from sidecars.common.auditchain import verify_chain
from sidecars.common.envelope import Attestation, RoomKey
from sidecars.common.errors import CcrError
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA
from sidecars.common.transports import tls_verify
from sidecars.governance.member_client import CgsMemberClient, CgsRequestFailed, accept_by_all, join

WRITES = 1000
KILLS = 6
HOST_DATA = hashlib.sha256(b"crash test room").digest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """The stand-in on a fixed port and state directory, restartable after it was killed."""

    run_dir: Path
    args: list[str]
    port: int
    proc: ManagedProcess | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        ready = self.run_dir / "cgs.ready"
        ready.unlink(missing_ok=True)
        self.proc = ManagedProcess("cgs", [sys.executable, "-m", "sidecars.emulators.cgs", *self.args,
                                           "--port", str(self.port), "--ready-file", str(ready)],
                                   ready=file_exists(ready), ready_timeout=30, log_path=self.run_dir / "cgs.log")
        self.proc.start()
        self.starts += 1

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # it may have died of an earlier kill
            os.kill(self.proc.pid, signal.SIGKILL)

    def restart_if_dead(self) -> None:
        assert self.proc is not None
        if self.proc.running():
            return
        self.proc.stop()
        self.start()


@dataclass
class Acknowledged:
    """What the stand-in said it did, and what was attempted but never answered."""

    events: list[int] = field(default_factory=list)
    # the transaction id each acknowledged event write answered, in the order they were acknowledged
    transaction_ids: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    contracts: list[str] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)
    # A member may vote again while a proposal is open, and may enable and disable execution: for these the
    # value that may be current is the last acknowledged or any attempted after it.
    ballots: dict[tuple[str, str], list[bool]] = field(default_factory=dict)
    execution: dict[str, list[str]] = field(default_factory=dict)
    # governance audit records the member writes above must have left: (action, key, value)
    records: list[tuple[str, str, str]] = field(default_factory=list)


def _setup(service: Service, ca: LocalCA, base: Path) -> tuple[dict[str, CgsMemberClient], str]:
    clients = {name: CgsMemberClient(service.url, MemberIdentity.create(base / name, name),
                                     ca_bundle=str(ca.cert_file), timeout=5) for name in ("alice", "bob")}
    operator = MemberIdentity.load(service.run_dir / "state" / "operator")
    with CgsMemberClient(service.url, operator, ca_bundle=str(ca.cert_file)) as op:
        join(op, list(clients.values()))
    alice = clients["alice"]
    contract_id = "crash-contract"
    alice.put_contract(contract_id, {"purpose": "survive kill -9"})
    for propose in (lambda: alice.propose_contract(contract_id),
                    lambda: alice.propose_policy(contract_id, {"x-ms-sevsnpvm-hostdata": [HOST_DATA.hex()]})):
        assert accept_by_all(list(clients.values()), propose())["proposalState"] == "Accepted"
    return clients, contract_id


@pytest.mark.slow
def test_acknowledged_writes_survive_kill_9(tmp_path):
    seed = int(os.environ.get("CCR_CRASH_SEED", time.time_ns() % 2**32))
    print(f"crash test seed: {seed} (rerun with CCR_CRASH_SEED={seed})")
    rng = random.Random(seed)

    ca = LocalCA.create(tmp_path / "ca")
    tls = ca.issue_server_cert("services", directory=tmp_path / "tls")
    platform = MockPlatform.create(tmp_path / "platform")
    service = Service(tmp_path, ["--cert", tls.cert_file, "--key", tls.key_file, "--state-dir",
                                 str(tmp_path / "state"), "--trust-mock-platform", str(tmp_path / "platform")],
                      _free_port())
    service.start()
    try:
        clients, contract_id = _setup(service, ca, tmp_path / "members")
        room_key = RoomKey.generate()
        combined = MockSnpProvider(platform, host_data=HOST_DATA).get_evidence(
            hashlib.sha256(room_key.public_pem).digest()).to_combined()
        attestation = Attestation(combined["evidence"], combined["endorsements"], combined["uvm_endorsements"])
        room = httpx.Client(verify=tls_verify(str(ca.cert_file)), timeout=5)
        acked = Acknowledged()
        kill_at = set(rng.sample(range(50, WRITES), KILLS))
        open_proposals: list[str] = []
        outcomes = {"acknowledged": 0, "unanswered": 0}

        def write(n: int) -> None:
            who = rng.choice(("alice", "bob"))
            member = clients[who]
            kind = rng.choice(("event", "event", "secret", "document", "contract", "propose", "vote", "consent"))
            if kind == "vote" and not open_proposals:
                kind = "propose"
            if kind == "event":
                body = room_key.signed_request(attestation, {"n": n})
                response = room.put(f"{service.url}/app/contracts/{contract_id}/events?scope=crash&id=w{n}",
                                    json=body)
                response.raise_for_status()
                acked.events.append(n)
                acked.transaction_ids.append(response.headers["x-ms-ccf-transaction-id"])
            elif kind == "secret":
                secret_id = member.put_secret(contract_id, f"s{n}", f"value {n}")
                acked.secrets[secret_id] = f"value {n}"
                acked.records.append(("put_secret", "secretId", secret_id))
            elif kind == "document":
                member.put_document(f"d{n}", contract_id, {"n": n})
                acked.documents[f"d{n}"] = {"n": n}
                acked.records.append(("put_document", "documentId", f"d{n}"))
            elif kind == "contract":
                member.put_contract(f"c{n}", {"n": n})
                acked.contracts.append(f"c{n}")
            elif kind == "propose":
                proposal = member.propose_runtime_option(contract_id, "logging", enable=rng.random() < 0.5)
                acked.proposals.append(proposal["proposalId"])
                if proposal["proposalState"] == "Open":  # disabling needs no vote: accepted at once
                    open_proposals.append(proposal["proposalId"])
                acked.records.append(("propose", "proposalId", proposal["proposalId"]))
            elif kind == "vote":
                proposal_id = rng.choice(open_proposals)
                accept = rng.random() < 0.8
                ballot = (proposal_id, member.identity.member_id)
                acked.ballots.setdefault(ballot, [None]).append(accept)
                try:
                    state = member.vote(proposal_id, accept)["proposalState"]
                except CgsRequestFailed as exc:
                    if exc.code == "VoteAlreadyExists":  # an earlier attempt's ballot, unanswered, was kept
                        return
                    if exc.code != "ProposalNotOpen":
                        raise
                    open_proposals.remove(proposal_id)
                    return
                acked.ballots[ballot] = [accept]
                acked.records.append(("vote", "proposalId", proposal_id))
                if state != "Open":
                    open_proposals.remove(proposal_id)
            else:
                status = rng.choice(("enabled", "disabled"))
                attempts = acked.execution.setdefault(who, ["enabled"])
                attempts.append(status)
                member.set_execution(contract_id, status == "enabled")
                acked.execution[who] = [status]

        started = time.monotonic()
        for n in range(WRITES):
            timer = None
            if n in kill_at:
                # Mid-request: the kill lands while the request is parsed, verified, committed or answered.
                timer = threading.Timer(rng.uniform(0, 0.006), service.kill)
                timer.start()
            try:
                write(n)
                outcomes["acknowledged"] += 1
            except (httpx.HTTPError, CcrError) as exc:
                status = getattr(exc, "http_status", None) or getattr(getattr(exc, "response", None),
                                                                      "status_code", None)
                if status is not None and 400 <= status < 500:
                    raise AssertionError(f"write {n} refused: {exc}") from exc
                outcomes["unanswered"] += 1
            if timer is not None:
                timer.join()
                service.proc.popen.wait(timeout=10)
            service.restart_if_dead()
        elapsed = time.monotonic() - started

        service.kill()
        service.proc.stop()
        service.start()
        alice = clients["alice"]

        events, head = alice.events(contract_id)
        assert verify_chain(events, head) == [], "the audit chain does not verify after the crashes"
        stored = {e["id"]: e for e in events}
        missing = [n for n in acked.events if stored.get(f"w{n}", {}).get("data") != {"n": n}]
        assert not missing, f"acknowledged audit events lost: {missing}"
        # Transaction ids are durable: every acknowledged one is Committed after the crashes, and none was
        # handed out twice (a restarted stand-in continues after the last committed seqno).
        seqnos = [int(txid.split(".")[1]) for txid in acked.transaction_ids]
        assert seqnos == sorted(set(seqnos)), "a transaction id was reused or went back after a kill -9"
        for txid in acked.transaction_ids:
            answer = room.get(f"{service.url}/app/tx", params={"transaction_id": txid}).json()
            assert answer == {"transaction_id": txid, "status": "Committed"}, answer
        for action, key, value in acked.records:
            assert any(e["scope"] == "cgs" and e["data"].get("action") == action and e["data"].get(key) == value
                       for e in events), f"the audit record of an acknowledged {action} ({value}) was lost"

        secrets = {s["secretId"] for s in alice.request("GET", f"/app/contracts/{contract_id}/secrets")["value"]}
        assert set(acked.secrets) <= secrets, f"acknowledged secrets lost: {set(acked.secrets) - secrets}"
        for document_id, data in acked.documents.items():
            assert alice.document(document_id)["data"] == data
        for new_contract in acked.contracts:
            assert alice.contract(new_contract)["data"] == {"n": int(new_contract[1:])}
            new_events, new_head = alice.events(new_contract)
            assert verify_chain(new_events, new_head) == []
        for proposal_id in acked.proposals:
            alice.proposal(proposal_id)
        for (proposal_id, member_id), possible in acked.ballots.items():
            votes = alice.proposal(proposal_id)["finalVotes"]
            assert votes.get(member_id) in possible, f"acknowledged ballot on {proposal_id} lost"
        status = alice.check_status(contract_id, "execution")
        disabled = {name for name, values in acked.execution.items() if values == ["disabled"]}
        possibly_disabled = {name for name, values in acked.execution.items() if "disabled" in values}
        if disabled:
            assert status["status"] == "disabled"
        if not possibly_disabled:
            assert status["status"] == "enabled"

        print(f"{WRITES} writes in {elapsed:.1f} s, {service.starts - 2} restarts after kill -9: {outcomes}")
        assert service.starts - 2 == KILLS and outcomes["acknowledged"] >= WRITES - 2 * KILLS
    finally:
        if service.proc is not None:
            service.proc.stop()
