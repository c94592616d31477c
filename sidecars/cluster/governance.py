"""The executor policy as the members accepted it: a member document of the contract, read from CGS by the
driver room's admission; every admission decision is an audit event of the contract in CGS.

The members propose the executor policy (what an executor room runs: its image by digest, resources, role,
the driver spec it serves) as a member document labelled `cluster: executor-policy`, in canonical JSON, and
every member accepts it with the query (`set_member_document`, the constitution's unanimity). The driver
room reads the accepted document (`memberdocuments/accepted/ID`, attested, wrapped to its key) at each
admission and admits only an executor whose HOST_DATA is sha256 of that policy: no value handed in by the
code that starts the cluster decides who joins. A document that is missing, of another contract or kind, or
not a policy refuses every executor (fail closed).

The CGS client runs on an event loop in a thread of its own, started in the caller's network namespace:
the admission server's threads live in the driver room's namespace, CGS is reached from where the room's
governance traffic goes (the stand-in listens on loopback here).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..common.errors import CcrError
from ..governance.cgs_client import CgsRoomClient
from ..room.group import canonical_spec_json
from ..spec import CleanRoomSpec
from .admission import AdmissionPolicy, ExecutorPolicyUnavailable

#: the executor policy document's label (not `kind`: those kinds are the analytics documents, decided by data
#: owners; this one is decided by every member)
EXECUTOR_POLICY_LABELS = {"cluster": "executor-policy"}
#: the audit events' id and scope in the contract's log (`ccr governance events list` shows them)
AUDIT_SCOPE = "cluster"
MAX_POLICY_CHARS = 16 * 1024
CGS_TIMEOUT_S = 30.0

T = TypeVar("T")


def canonical(policy: dict[str, object]) -> str:
    return json.dumps(policy, sort_keys=True, separators=(",", ":"))


def host_data_of(policy: dict[str, object]) -> str:
    """The HOST_DATA of an executor room that runs `policy`: sha256 of its canonical JSON."""
    return hashlib.sha256(canonical(policy).encode()).hexdigest()


def spec_sha256(spec: CleanRoomSpec) -> str:
    """The driver spec a cluster serves, as its executor policy and the driver's HOST_DATA name it."""
    return hashlib.sha256(canonical_spec_json(spec).encode()).hexdigest()


def driver_host_data(spec_sha256: str) -> str:
    """The HOST_DATA the driver room attests with on the mock platform: its role and the spec it runs."""
    return host_data_of({"role": "driver", "spec_sha256": spec_sha256})


def executor_policy_document_id(contract_id: str) -> str:
    """The id of the member document that holds a contract's executor policy (CGS ids are global)."""
    return f"{contract_id}-executor-policy"


def accepted_host_data(document: Any, contract_id: str) -> str:
    """The executor HOST_DATA an accepted member document states, or ExecutorPolicyUnavailable."""
    if not isinstance(document, dict):
        raise ExecutorPolicyUnavailable("the executor policy document is not an object")
    if document.get("contractId") != contract_id:
        raise ExecutorPolicyUnavailable(f"the executor policy document is not of contract {contract_id}")
    labels = document.get("labels")
    if not isinstance(labels, dict) or any(labels.get(k) != v for k, v in EXECUTOR_POLICY_LABELS.items()):
        raise ExecutorPolicyUnavailable(f"the document is not labelled {EXECUTOR_POLICY_LABELS}")
    data = document.get("data")
    if not isinstance(data, str) or not 0 < len(data) <= MAX_POLICY_CHARS:
        raise ExecutorPolicyUnavailable(f"the executor policy must be JSON text of 1..{MAX_POLICY_CHARS} characters")
    try:
        policy = json.loads(data)
    except (ValueError, RecursionError):
        raise ExecutorPolicyUnavailable("the executor policy is not JSON") from None
    if not isinstance(policy, dict) or policy.get("role") != "executor":
        raise ExecutorPolicyUnavailable("the executor policy is not an object with role: executor")
    return host_data_of(policy)


class CgsExecutorPolicy:
    """The driver room's link to CGS for admission: the accepted policy, and audit events."""

    def __init__(self, cgs_endpoint: str, contract_id: str, document_id: str, *, skr_url: str,
                 ca_bundle: str | None = None) -> None:
        self.contract_id = contract_id
        self.document_id = document_id
        self._loop = asyncio.new_event_loop()
        # started here: its sockets are in this thread's network namespace, whatever thread asks later
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="cluster-cgs")
        self._thread.start()
        self._client = self._call(self._make_client(cgs_endpoint, contract_id, skr_url, ca_bundle))

    @staticmethod
    async def _make_client(endpoint: str, contract_id: str, skr_url: str, ca_bundle: str | None) -> CgsRoomClient:
        return CgsRoomClient(endpoint, contract_id, skr_url=skr_url, ca_bundle=ca_bundle)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=CGS_TIMEOUT_S)

    def accepted_policy(self) -> AdmissionPolicy:
        """Read at each admission, so an executor is checked against what is accepted now."""
        try:
            document = self._call(self._client.document(self.document_id))
        except (CcrError, TimeoutError) as exc:
            raise ExecutorPolicyUnavailable(f"no accepted executor policy {self.document_id!r} in CGS: "
                                            f"{str(exc)[:200]}") from None
        return AdmissionPolicy(accepted_host_data(document, self.contract_id))

    def audit(self, record: dict[str, Any]) -> None:
        """One event in the contract's audit log, done once CGS committed it."""
        self._call(self._client.put_event(record, event_id=self.contract_id, scope=AUDIT_SCOPE))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
