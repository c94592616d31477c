"""Governance round trips: an acknowledged audit write (`PUT /events` through the governance sidecar to the
CGS stand-in, signed, attested and hash-chained) and an execution consent check.

Figures: `audit_event_ms` (median; goal ≤ 10 ms) and `consent_check_ms` (median), with a direct HTTPS
round trip to the CGS stand-in as the baseline measured in the same run.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sidecars.attestation import MockPlatform
from sidecars.common.governance_client import GovernanceClient
from sidecars.common.memberauth import MemberIdentity
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA
from sidecars.common.transports import tls_verify
from sidecars.governance.member_client import CgsMemberClient, join

ROUNDS = 200
HOST_DATA = hashlib.sha256(b"bench policy").digest()


def _start(name: str, module: str, args: list[str], run_dir: Path) -> tuple[ManagedProcess, str]:
    ready = run_dir / f"{name}.ready"
    proc = ManagedProcess(name, [sys.executable, "-m", module, *args, "--ready-file", str(ready)],
                          ready=file_exists(ready), ready_timeout=30, log_path=run_dir / f"{name}.log")
    proc.start()
    return proc, json.loads(ready.read_text())["url"]


def _median_ms(action, rounds: int = ROUNDS) -> float:
    for _ in range(10):
        action()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ccr-bench-gov-") as tmp:
        run_dir = Path(tmp)
        ca = LocalCA.create(run_dir / "ca")
        tls = ca.issue_server_cert("services")
        MockPlatform.create(run_dir / "platform")
        skr, skr_url = _start("skr", "sidecars.skr", [
            "--port", "0", "--platform", "mock", "--mock-platform-dir", str(run_dir / "platform"),
            "--host-data", HOST_DATA.hex()], run_dir)
        cgs, cgs_url = _start("cgs", "sidecars.emulators.cgs", [
            "--cert", tls.cert_file, "--key", tls.key_file, "--state-dir", str(run_dir / "cgs"),
            "--trust-mock-platform", str(run_dir / "platform")], run_dir)
        gov_proc = None
        try:
            alice = MemberIdentity.create(run_dir / "alice", "alice")
            with CgsMemberClient(cgs_url, alice, ca_bundle=str(ca.cert_file)) as member:
                with CgsMemberClient(cgs_url, MemberIdentity.load(run_dir / "cgs" / "operator"),
                                     ca_bundle=str(ca.cert_file)) as operator:
                    join(operator, [member])
                member.put_contract("bench", {"purpose": "bench"})
                member.vote(member.propose_contract("bench")["proposalId"])
                member.vote(member.propose_policy("bench", {"x-ms-sevsnpvm-hostdata": [HOST_DATA.hex()],
                                                            "x-ms-sevsnpvm-is-debuggable": False})["proposalId"])
            gov_proc, gov_url = _start("governance", "sidecars.governance", [
                "--port", "0", "--cgs-endpoint", cgs_url, "--contract-id", "bench", "--cgs-ca-bundle",
                str(ca.cert_file), "--skr-url", skr_url,
                "--consent-poll-interval", "0"], run_dir)
            with GovernanceClient(gov_url, scope="bench") as gov, \
                    httpx.Client(verify=tls_verify(str(ca.cert_file))) as direct:
                counter = iter(range(10**9))
                audit_ms = _median_ms(lambda: gov.audit({"step": "bench", "n": next(counter)}))
                consent_ms = _median_ms(lambda: gov.require_consent("execution"))
                baseline_ms = _median_ms(lambda: direct.get(f"{cgs_url}/oidc/keys"))
            print(f"   HTTPS round trip to CGS (baseline): {baseline_ms:.2f} ms")
            print(f"   acknowledged audit write: {audit_ms:.2f} ms ({audit_ms / baseline_ms:.1f}x baseline; "
                  f"goal <= 10 ms)")
            print(f"   execution consent check: {consent_ms:.2f} ms ({consent_ms / baseline_ms:.1f}x baseline)")
            return {"audit_event_ms": round(audit_ms, 3), "consent_check_ms": round(consent_ms, 3)}
        finally:
            if gov_proc is not None:
                gov_proc.stop()
            cgs.stop()
            skr.stop()
