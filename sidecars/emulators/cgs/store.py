"""The governance state of the CGS stand-in: members, contracts, proposals and everything they decide.

Read from memory and kept in the stand-in's database (see `db`): every change writes the entries it touched
in one transaction, committed before the method returns, so what a caller was told is done survives a
crash, and a restarted stand-in resumes where it stopped.

Proposals follow CCF's model: a member proposes actions, every member votes, the proposal is accepted when
all members accept (and rejected as soon as one rejects); accepted actions are applied at once.

A deployment spec (`set_deployment_spec`, the ARM template the contract's room is deployed from) is decided
by the contract's own members: when the contract's data names its members (a ccr spec's
`contract.members`), only those may propose or vote on it, and it is accepted once each of them accepted
(a named member who is not registered keeps it open). It is proposed alone, so no other action rides on
that narrower vote. As in azure-cleanroom's CGS it can be proposed only once the contract is accepted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...common.errors import BadRequest, Conflict, Forbidden, NotFound
from . import db

RUNTIME_OPTIONS = ("logging", "telemetry")
POLICY_CLAIMS = {
    "x-ms-attestation-type": str, "x-ms-compliance-status": str, "x-ms-sevsnpvm-hostdata": str,
    "x-ms-sevsnpvm-is-debuggable": bool, "x-ms-sevsnpvm-launchmeasurement": str,
    "x-ms-sevsnpvm-guestsvn": int, "x-ms-sevsnpvm-vmpl": int,
}
ACTIONS = ("set_contract", "set_clean_room_policy", "set_deployment_spec", "set_member_document", "enable_ca",
           "set_contract_runtime_options_enable_logging", "set_contract_runtime_options_disable_logging",
           "set_contract_runtime_options_enable_telemetry", "set_contract_runtime_options_disable_telemetry")


@dataclass
class State:
    members: dict[str, dict[str, str]] = field(default_factory=dict)
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    execution: dict[str, dict[str, str]] = field(default_factory=dict)
    runtime_options: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    ca: dict[str, dict[str, str]] = field(default_factory=dict)
    # contract id -> {"data": the accepted template, "proposalId": the proposal that accepted it}
    deployment_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    version_counter: int = 0


# How deep each field of State is keyed: one database row per entry at that depth. Secrets and consent are
# per contract *and* per secret or member, so adding one does not rewrite the others.
NESTING = {"members": 1, "contracts": 1, "proposals": 1, "policies": 1, "execution": 2, "runtime_options": 1,
           "secrets": 2, "documents": 1, "ca": 1, "deployment_specs": 1}

# What a mutation touched: a State field and the keys of the entry, e.g. ("secrets", contract_id, secret_id).
Touched = list[tuple[str, ...]]


def _normalise_claim(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool | str) else str(value)


class Store:
    """All mutations go through methods that hold the lock and persist before returning.

    `path` is the database file (see `db`); it may be shared with the audit log."""

    def __init__(self, path: Path | db.Database):
        self.db = db.open_database(path)
        self.path = self.db.path
        self.lock = self.db.lock
        self.state = self._load()
        self.db.on_rollback(self._reload)

    def _reload(self) -> None:
        self.state = self._load()

    def _load(self) -> State:
        state = State()
        for kind, key, value in self.db.conn.execute("SELECT kind, key, value FROM records"):
            if kind == "version_counter":
                state.version_counter = json.loads(value)
                continue
            keys = json.loads(key)
            target = getattr(state, kind)
            for outer in keys[:-1]:
                target = target.setdefault(outer, {})
            target[keys[-1]] = json.loads(value)
        return state

    @contextmanager
    def _change(self) -> Iterator[Touched]:
        """One mutation: the caller lists what it touches before it touches it; on the way out those entries
        are written in one transaction. If anything fails after an entry was touched, memory is reloaded
        from the database, so it never holds a change that is not durable."""
        with self.lock:
            touched: Touched = []
            try:
                yield touched
                if touched:
                    self._persist(touched)
            except BaseException:
                if touched:
                    self._reload()
                raise

    def _persist(self, touched: Touched) -> None:
        rows = {("version_counter", "[]"): json.dumps(self.state.version_counter)}
        for kind, *keys in touched:
            value: Any = getattr(self.state, kind)
            for key in keys:
                value = value[key]
            rows[(kind, json.dumps(keys))] = json.dumps(value)
        with self.db.transaction() as conn:
            db.upsert_records(conn, ((kind, key, value) for (kind, key), value in rows.items()))

    def close(self) -> None:
        self.db.close()

    def _next_version(self) -> str:
        self.state.version_counter += 1
        return str(self.state.version_counter)

    # -- members
    def add_member(self, member_id: str, name: str, cert_pem: str) -> None:
        with self._change() as touched:
            if any(m["name"] == name for mid, m in self.state.members.items() if mid != member_id):
                raise Conflict(f"a member named {name!r} already exists")
            touched.append(("members", member_id))
            self.state.members[member_id] = {"name": name, "cert": cert_pem}

    def member_name(self, member_id: str) -> str:
        return self.state.members.get(member_id, {}).get("name", member_id[:12])

    # -- contracts
    def contract(self, contract_id: str) -> dict[str, Any]:
        contract = self.state.contracts.get(contract_id)
        if contract is None:
            raise NotFound(f"contract {contract_id!r} does not exist", code="ContractNotFound")
        return contract

    def is_accepted(self, contract_id: str) -> bool:
        return self.state.contracts.get(contract_id, {}).get("state") == "Accepted"

    def put_contract(self, contract_id: str, data: Any, version: str | None) -> dict[str, Any]:
        with self._change() as touched:
            existing = self.state.contracts.get(contract_id)
            if existing is not None:
                if existing["state"] != "Draft":
                    raise Conflict(f"contract {contract_id!r} is {existing['state']}: it can no longer change",
                                   code="ContractAlreadyProposed")
                if version != existing["version"]:
                    raise Conflict(f"contract {contract_id!r} exists at version {existing['version']}; "
                                   "pass that version to update it", code="PreconditionFailed")
            contract = {"id": contract_id, "data": data, "version": self._next_version(), "state": "Draft",
                        "proposalId": "", "finalVotes": []}
            touched.append(("contracts", contract_id))
            self.state.contracts[contract_id] = contract
            return contract

    # -- proposals
    def create_proposal(self, proposer: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
        with self._change() as touched:
            if not actions:
                raise BadRequest("a proposal needs at least one action")
            for action in actions:
                self._validate_action(action)
            self._check_deployment_proposer(proposer, actions)
            proposal_id = uuid.uuid4().hex
            proposal = {"proposalId": proposal_id, "proposerId": proposer, "actions": actions, "state": "Open",
                        "ballots": {}}
            for action in actions:
                if action["name"] == "set_contract":
                    touched.append(("contracts", action["args"]["contractId"]))
                    contract = self.state.contracts[action["args"]["contractId"]]
                    contract.update(state="Proposed", proposalId=proposal_id)
                if action["name"] == "set_member_document":
                    touched.append(("documents", action["args"]["documentId"]))
                    self.state.documents[action["args"]["documentId"]].update(state="Proposed",
                                                                              proposalId=proposal_id)
            touched.append(("proposals", proposal_id))
            self.state.proposals[proposal_id] = proposal
            return proposal

    def _validate_action(self, action: dict[str, Any]) -> None:
        name, args = action.get("name"), action.get("args")
        if name not in ACTIONS:
            raise BadRequest(f"unknown action {name!r}; known: {', '.join(ACTIONS)}")
        if not isinstance(args, dict):
            raise BadRequest(f"action {name}: args must be an object")
        if name == "set_member_document":
            doc_id = args.get("documentId")
            doc = self.state.documents.get(doc_id)
            if doc is None:
                raise NotFound(f"document {doc_id!r} does not exist", code="DocumentNotFound")
            if doc["state"] != "Draft":
                raise Conflict(f"document {doc_id!r} is {doc['state']}", code="DocumentAlreadyProposed")
            return
        contract_id = args.get("contractId")
        contract = self.contract(contract_id)
        if name == "set_deployment_spec":
            if contract["state"] != "Accepted":
                raise BadRequest(f"Deployment spec can only be proposed once contract '{contract_id}' has been "
                                 "accepted.", code="ProposalFailedToValidate")
            spec = args.get("spec")
            if not isinstance(spec, dict) or not isinstance(spec.get("data"), dict) or not spec["data"]:
                raise BadRequest("set_deployment_spec: spec must be {data: <the ARM template, a non-empty object>}",
                                 code="ProposalFailedToValidate")
        if name == "set_contract":
            if contract["state"] != "Draft":
                raise Conflict(f"contract {contract_id!r} is already {contract['state']}",
                               code="ContractAlreadyProposed")
            if args.get("version") not in (None, contract["version"]):
                raise Conflict(f"contract {contract_id!r} is at version {contract['version']}",
                               code="PreconditionFailed")
        if name == "set_clean_room_policy":
            if args.get("type", "add") not in ("add", "remove"):
                raise BadRequest("set_clean_room_policy: type must be add or remove")
            claims = args.get("claims")
            if not isinstance(claims, dict) or not claims:
                raise BadRequest("set_clean_room_policy: claims must be a non-empty object")
            for claim, values in claims.items():
                if claim not in POLICY_CLAIMS:
                    raise BadRequest(f"the claim {claim!r} is not an allowed claim")
                for value in values if isinstance(values, list) else [values]:
                    if not isinstance(value, POLICY_CLAIMS[claim]):
                        raise BadRequest(f"claim {claim!r}: {value!r} is not a {POLICY_CLAIMS[claim].__name__}")

    def vote(self, proposal_id: str, member_id: str, accept: bool) -> dict[str, Any]:
        with self._change() as touched:
            proposal = self.state.proposals.get(proposal_id)
            if proposal is None:
                raise NotFound(f"proposal {proposal_id!r} does not exist", code="ProposalNotFound")
            if proposal["state"] != "Open":
                raise Conflict(f"proposal {proposal_id} is {proposal['state']}", code="ProposalNotOpen")
            voters = self._voters(proposal)
            if member_id not in voters:
                raise Forbidden(f"{self.member_name(member_id)} is not a member of contract "
                                f"{self._deployment_contract(proposal)!r}: only its members vote on its deployment",
                                code="NotContractMember")
            touched.append(("proposals", proposal_id))
            proposal["ballots"][member_id] = accept
            if not accept:
                self._close(proposal, "Rejected", touched)
            elif all(proposal["ballots"].get(m) for m in voters):
                self._close(proposal, "Accepted", touched)
            return proposal

    # -- who decides a deployment spec
    @staticmethod
    def _deployment_contract(proposal: dict[str, Any]) -> str | None:
        return next((a["args"]["contractId"] for a in proposal["actions"] if a["name"] == "set_deployment_spec"),
                    None)

    def contract_members(self, contract_id: str) -> set[str]:
        """The member ids of the contract's named members (`data.contract.members` of a ccr spec); a name no
        registered member has stays in the set as itself, so it can never be counted as voted. A contract
        that names no members is every member's."""
        data = self.contract(contract_id).get("data")
        contract = data.get("contract") if isinstance(data, dict) else None
        named = contract.get("members") if isinstance(contract, dict) else None
        if not isinstance(named, list) or not named or not all(isinstance(n, str) for n in named):
            return set(self.state.members)
        by_name = {m["name"]: mid for mid, m in self.state.members.items()}
        return {by_name.get(name, f"unregistered member {name}") for name in named}

    def _voters(self, proposal: dict[str, Any]) -> set[str]:
        contract_id = self._deployment_contract(proposal)
        return set(self.state.members) if contract_id is None else self.contract_members(contract_id)

    def _check_deployment_proposer(self, proposer: str, actions: list[dict[str, Any]]) -> None:
        deployments = [a for a in actions if a["name"] == "set_deployment_spec"]
        if not deployments:
            return
        if len(actions) != 1:
            raise BadRequest("set_deployment_spec is proposed alone (its contract's members decide it)",
                             code="ProposalFailedToValidate")
        contract_id = deployments[0]["args"]["contractId"]
        if proposer not in self.contract_members(contract_id):
            raise Forbidden(f"{self.member_name(proposer)} is not a member of contract {contract_id!r}: only its "
                            "members propose its deployment", code="NotContractMember")

    def _close(self, proposal: dict[str, Any], outcome: str, touched: Touched) -> None:
        proposal["state"] = outcome
        votes = [{"memberId": m, "vote": v} for m, v in proposal["ballots"].items()]
        for action in proposal["actions"]:
            name, args = action["name"], action["args"]
            if name == "set_contract":
                touched.append(("contracts", args["contractId"]))
                contract = self.state.contracts[args["contractId"]]
                contract.update(state="Accepted" if outcome == "Accepted" else "Draft", finalVotes=votes)
            elif name == "set_member_document":
                touched.append(("documents", args["documentId"]))
                doc = self.state.documents[args["documentId"]]
                doc.update(state="Accepted" if outcome == "Accepted" else "Draft", finalVotes=votes)
            elif outcome == "Accepted":
                self._apply(name, args, touched, proposal["proposalId"])

    def _apply(self, name: str, args: dict[str, Any], touched: Touched, proposal_id: str) -> None:
        contract_id = args["contractId"]
        if name == "set_deployment_spec":
            touched.append(("deployment_specs", contract_id))
            self.state.deployment_specs[contract_id] = {"data": args["spec"]["data"], "proposalId": proposal_id}
        elif name == "set_clean_room_policy":
            touched.append(("policies", contract_id))
            policy = self.state.policies.setdefault(contract_id, {})
            for claim, values in args["claims"].items():
                values = values if isinstance(values, list) else [values]
                if args.get("type", "add") == "add":
                    current = [] if isinstance(values[0], bool) else policy.get(claim, [])
                    policy[claim] = current + [v for v in values if v not in current]
                else:
                    policy[claim] = [v for v in policy.get(claim, []) if v not in values]
                    if not policy[claim]:
                        del policy[claim]
        elif name == "enable_ca":
            touched.append(("ca", contract_id))
            self.state.ca.setdefault(contract_id, {})
        elif name.startswith("set_contract_runtime_options_"):
            _, _, rest = name.partition("set_contract_runtime_options_")
            verb, _, option = rest.partition("_")
            touched.append(("runtime_options", contract_id))
            self.state.runtime_options.setdefault(contract_id, {})[option] = (
                "enabled" if verb == "enable" else "disabled")

    def deployment_spec(self, contract_id: str) -> dict[str, Any]:
        """CGS's answer to `GET /app/contracts/{id}/deploymentspec`: the open proposals and the accepted
        template (`{}` when none was accepted); the stand-in adds the accepting proposal's id."""
        self.contract(contract_id)
        open_ids = [pid for pid, p in self.state.proposals.items()
                    if p["state"] == "Open" and self._deployment_contract(p) == contract_id]
        accepted = self.state.deployment_specs.get(contract_id)
        return {"proposalIds": open_ids, "data": accepted["data"] if accepted else {},
                "proposalId": accepted["proposalId"] if accepted else ""}

    # -- policy and consent
    def policy_violation(self, contract_id: str, claims: dict[str, Any]) -> str | None:
        policy = self.state.policies.get(contract_id)
        if not policy:
            return f"contract {contract_id!r} has no clean room policy: no attestation can satisfy it"
        for claim, allowed in policy.items():
            actual = claims.get(claim)
            if actual is None or _normalise_claim(actual) not in {_normalise_claim(v) for v in allowed}:
                return f"claim {claim} = {actual!r} is not allowed by the clean room policy (allowed: {allowed})"
        return None

    def set_execution(self, contract_id: str, member_id: str, status: str) -> None:
        with self._change() as touched:
            if not self.is_accepted(contract_id):
                raise BadRequest("contract does not exist or has not been accepted", code="ContractNotAccepted")
            touched.append(("execution", contract_id, member_id))
            self.state.execution.setdefault(contract_id, {})[member_id] = status

    def execution_status(self, contract_id: str) -> dict[str, Any]:
        if not self.is_accepted(contract_id):
            return {"status": "disabled", "reason": {"code": "ContractNotAccepted",
                                                     "message": "Contract does not exist or has not been accepted."}}
        disabled_by = [self.member_name(m) for m, s in self.state.execution.get(contract_id, {}).items()
                       if s == "disabled"]
        if disabled_by:
            return {"status": "disabled", "reason": {
                "code": "ContractDisabled",
                "message": f"Contract has been disabled by the following member(s): {', '.join(disabled_by)}."}}
        return {"status": "enabled"}

    def option_status(self, contract_id: str, option: str) -> dict[str, Any]:
        if not self.is_accepted(contract_id):
            return {"status": "disabled", "reason": {"code": "ContractNotAccepted",
                                                     "message": "Contract does not exist or has not been accepted."}}
        status = self.state.runtime_options.get(contract_id, {}).get(option, "disabled")
        open_ids = [pid for pid, p in self.state.proposals.items() if p["state"] == "Open" and any(
            a["name"].endswith(f"_{option}") and a["args"].get("contractId") == contract_id for a in p["actions"])]
        return {"status": status, "proposalIds": open_ids}

    # -- secrets and documents
    def put_secret(self, contract_id: str, prefix: str, name: str, value: str) -> str:
        with self._change() as touched:
            if not value:
                raise BadRequest("Value must be supplied.", code="ValueMissing")
            if len(value) > 25600:
                raise BadRequest(f"secret is {len(value)} characters; at most 25600", code="ValueTooLarge")
            self.contract(contract_id)
            secret_id = f"{prefix}_{name}"
            touched.append(("secrets", contract_id, secret_id))
            self.state.secrets.setdefault(contract_id, {})[secret_id] = value
            return secret_id

    def put_document(self, document_id: str, contract_id: str, data: Any, version: str | None) -> dict[str, Any]:
        with self._change() as touched:
            self.contract(contract_id)
            existing = self.state.documents.get(document_id)
            if existing is not None:
                if existing["state"] != "Draft":
                    raise Conflict("An accepted or proposed document cannot be changed.",
                                   code="DocumentAlreadyAccepted")
                if version != existing["version"]:
                    raise Conflict(f"document exists at version {existing['version']}", code="PreconditionFailed")
            document = {"id": document_id, "contractId": contract_id, "data": data, "version": self._next_version(),
                        "state": "Draft", "proposalId": "", "finalVotes": []}
            touched.append(("documents", document_id))
            self.state.documents[document_id] = document
            return document

    def set_ca(self, contract_id: str, key_pem: str, cert_pem: str) -> None:
        with self._change() as touched:
            touched.append(("ca", contract_id))
            self.state.ca[contract_id] = {"key": key_pem, "cert": cert_pem}
