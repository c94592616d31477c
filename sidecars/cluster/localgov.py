"""A cluster's governance on this machine, for the tests, the bench and the demo: the CGS stand-in (and the
MAA stand-in that makes the mock SEV-SNP platform), two members who accept the contract, the driver room's
clean-room policy and the executor policy, and the driver room's skr sidecar on the mock platform (its
attestation to CGS).

The members' side is what `ccr governance` does (member register, contract propose, policy set, document
propose, votes); the room's side is `governance.CgsExecutorPolicy`. CGS ids are global: each instance
prefixes its contract and document with its own `prefix`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import ConfigError
from ..common.memberauth import MemberIdentity
from ..common.process import ManagedProcess, file_exists
from ..emulators import runner
from ..governance.member_client import CgsMemberClient, CgsRequestFailed, accept_by_all, join
from ..spec import CleanRoomSpec
from .governance import (
    EXECUTOR_POLICY_LABELS,
    CgsExecutorPolicy,
    canonical,
    driver_host_data,
    executor_policy_document_id,
    spec_sha256,
)
from .rooms import executor_policy

HOST_DATA_CLAIM = "x-ms-sevsnpvm-hostdata"
MEMBERS = ("alice", "bob")


@dataclass
class LocalGovernance:
    run_dir: Path
    prefix: str
    driver_host_data: str
    endpoints: dict = field(default_factory=dict)
    members: dict[str, CgsMemberClient] = field(default_factory=dict)
    skr: ManagedProcess | None = None
    skr_url: str = ""

    @property
    def contract_id(self) -> str:
        return f"{self.prefix}-analytics"

    @property
    def document_id(self) -> str:
        return executor_policy_document_id(self.contract_id)

    @property
    def mock_platform_dir(self) -> Path:
        return Path(self.endpoints["mock_platform_dir"])

    def start(self) -> LocalGovernance:
        """Stand-ins, members, the accepted contract and the driver room's policy, the driver's skr."""
        try:
            registry = [stand_in for stand_in in runner.REGISTRY if stand_in.name in ("maa", "cgs")]
            self.endpoints = runner.start(self.run_dir, registry=registry)
            ca = self.endpoints["ca_bundle"]
            operator = CgsMemberClient(self.endpoints["cgs_endpoint"],
                                       MemberIdentity.load(self.endpoints["cgs_operator_dir"]), ca_bundle=ca)
            self.members = {name: CgsMemberClient(self.endpoints["cgs_endpoint"],
                                                  MemberIdentity.create(self.run_dir / "members" / name, name),
                                                  ca_bundle=ca) for name in MEMBERS}
            with operator:
                join(operator, list(self.members.values()))
            alice = self.members["alice"]
            alice.put_contract(self.contract_id, {"purpose": "scale-out analytics on a cluster of rooms"})
            self._accept(alice.propose_contract(self.contract_id))
            if self.driver_host_data:  # else: accept_driver_policy, once the driver's spec is known
                self.accept_driver_policy(self.driver_host_data)
                self._start_skr()
        except BaseException:
            self.stop()
            raise
        return self

    def accept_driver_policy(self, host_data: str) -> None:
        """The contract's clean-room policy, accepted by every member: the driver room's HOST_DATA."""
        self.driver_host_data = host_data
        self._accept(self.members["alice"].propose_policy(self.contract_id, {
            HOST_DATA_CLAIM: [host_data], "x-ms-sevsnpvm-is-debuggable": False}))

    def accept_cluster_spec(self, spec: CleanRoomSpec) -> None:
        """What `ccr room up` of a spec with a cluster section needs accepted: the driver room's policy
        (HOST_DATA of this spec) and the executor policy of its cluster section."""
        if spec.cluster is None:
            raise ConfigError(f"spec {spec.name} has no cluster section")
        served = spec_sha256(spec)
        self.accept_driver_policy(driver_host_data(served))
        self.accept_executor_policy(executor_policy(spec.cluster, served))

    def _accept(self, proposal: dict) -> dict:
        proposal = accept_by_all(list(self.members.values()), proposal)
        if proposal["proposalState"] != "Accepted":
            raise RuntimeError(f"proposal {proposal['proposalId']} is {proposal['proposalState']}")
        return proposal

    def _start_skr(self) -> None:
        self.skr, self.skr_url = start_driver_skr(self.run_dir, self.mock_platform_dir, self.driver_host_data)

    def propose_executor_policy(self, policy: dict[str, object], *, by: str = "alice") -> dict:
        """The member document carrying the executor policy, proposed by one member (who votes for it)."""
        member = self.members[by]
        document = {"contractId": self.contract_id, "data": canonical(policy), "labels": EXECUTOR_POLICY_LABELS}
        with contextlib.suppress(CgsRequestFailed):  # a draft that is already there (or accepted) stays
            member.put_document(self.document_id, self.contract_id, document["data"],
                                labels=EXECUTOR_POLICY_LABELS)
        # the proposal carries this policy, not the draft read back (another member may rewrite a draft)
        return member.propose({"name": "set_member_document",
                               "args": {"documentId": self.document_id, "document": document}})

    def accept_executor_policy(self, policy: dict[str, object]) -> None:
        """Every member accepts the executor policy (the constitution: unanimity)."""
        self._accept(self.propose_executor_policy(policy))

    def driver_link(self) -> CgsExecutorPolicy:
        """The driver room's admission link to CGS (attests with the driver's skr)."""
        return CgsExecutorPolicy(self.endpoints["cgs_endpoint"], self.contract_id, self.document_id,
                                 skr_url=self.skr_url, ca_bundle=self.endpoints["ca_bundle"])

    def events(self) -> list[dict]:
        """The contract's audit log, as a member reads it."""
        return self.members["alice"].events(self.contract_id)[0]

    def stop(self) -> None:
        if self.skr is not None:
            self.skr.stop()
            self.skr = None
        for client in self.members.values():
            client.close()
        with contextlib.suppress(ConfigError):  # never started
            runner.stop(self.run_dir)


def start_driver_skr(run_dir: Path, mock_platform_dir: Path, host_data: str) -> tuple[ManagedProcess, str]:
    """The driver room's skr sidecar on the mock platform (its attestation to CGS), and its URL."""
    ready = run_dir / "driver-skr.ready"
    ready.unlink(missing_ok=True)
    skr = ManagedProcess("driver-skr", [sys.executable, "-m", "sidecars.skr", "--port", "0", "--platform", "mock",
                                        "--mock-platform-dir", str(mock_platform_dir), "--host-data", host_data,
                                        "--ready-file", str(ready)],
                         ready=file_exists(ready), ready_timeout=60, log_path=run_dir / "driver-skr.log",
                         cwd=Path(__file__).resolve().parents[2])
    skr.start()
    return skr, json.loads(ready.read_text())["url"]
