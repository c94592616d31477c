"""The governance state of the CGS stand-in: members, contracts, proposals and everything they decide.

Read from memory and kept in the stand-in's database (see `db`): every change writes the entries it touched
in one transaction, committed before the method returns, so what a caller was told is done survives a
crash, and a restarted stand-in resumes where it stopped.

Proposals follow CCF's model: a member proposes actions (each checked as CGS's `validate` checks it), members
vote, and after each ballot the constitution (see `constitution`) says whether the proposal is accepted,
rejected or still open; an accepted proposal's actions are applied at once, all or none (a failing one leaves
it Failed). Members join by a `set_member` proposal (status Accepted) and become Active by acknowledging a
state digest, as in CCF.

A deployment spec (`set_deployment_spec`, the ARM template the contract's room is deployed from) is decided
by the contract's own members: when the contract's data names its members (a ccr spec's
`contract.members`), only those may propose or vote on it, and it is accepted once each of them accepted
(a named member who is not registered keeps it open). It is proposed alone, so no other action rides on
that narrower vote. As in azure-cleanroom's CGS it can be proposed only once the contract is accepted.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from ...common.errors import BadRequest, CcrError, Conflict, Forbidden, NotFound
from ...common.memberauth import member_id_of
from . import analytics, constitution, db, identities

RUNTIME_OPTIONS = ("logging", "telemetry")
POLICY_CLAIMS = {
    "x-ms-attestation-type": str, "x-ms-compliance-status": str, "x-ms-sevsnpvm-hostdata": str,
    "x-ms-sevsnpvm-is-debuggable": bool, "x-ms-sevsnpvm-launchmeasurement": str,
    "x-ms-sevsnpvm-guestsvn": int, "x-ms-sevsnpvm-vmpl": int,
}
ACTIONS = ("set_member", "remove_member", "set_contract", "set_clean_room_policy", "set_deployment_spec",
           "set_member_document", "enable_ca", "ca_enable_rotate_signing_key", "enable_oidc_issuer",
           "set_oidc_issuer_url", "oidc_issuer_enable_rotate_signing_key",
           "set_contract_runtime_options_enable_logging", "set_contract_runtime_options_disable_logging",
           "set_contract_runtime_options_enable_telemetry", "set_contract_runtime_options_disable_telemetry")


@dataclass
class State:
    # member id -> {cert, member_data, status (Accepted | Active), name (member_data.identifier)}
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    # member id -> {stateDigest: the digest it must acknowledge, updates}
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    execution: dict[str, dict[str, str]] = field(default_factory=dict)
    runtime_options: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # contract id -> {enabled, requestId (bumped by each accepted enable/rotate), and once generateSigningKey
    # ran: key, cert, publicKey, keyRequestId}
    ca: dict[str, dict[str, str]] = field(default_factory=dict)
    # "issuer" -> {enabled, requestId, kid, issuerUrl?}; "signing_key" -> {key, kid, keyRequestId}
    oidc: dict[str, dict[str, str]] = field(default_factory=dict)
    # contract id -> {"data": the accepted template, "proposalId": the proposal that accepted it}
    deployment_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # analytics document id -> member id -> "enabled" | "disabled" (its deciders' execution consent)
    document_execution: dict[str, dict[str, str]] = field(default_factory=dict)
    version_counter: int = 0


# How deep each field of State is keyed: one database row per entry at that depth. Secrets and consent are
# per contract *and* per secret or member, so adding one does not rewrite the others.
NESTING = {"members": 1, "acks": 1, "oidc": 1, "contracts": 1, "proposals": 1, "policies": 1, "execution": 2,
           "runtime_options": 1, "secrets": 2, "documents": 1, "ca": 1, "deployment_specs": 1,
           "document_execution": 2}

# An entry a mutation touched that is gone by its end (deleted from the database).
_GONE = object()

# What a mutation touched: a State field and the keys of the entry, e.g. ("secrets", contract_id, secret_id).
Touched = list[tuple[str, ...]]


def _normalise_claim(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool | str) else str(value)


def _member_id_of_pem(cert_pem: str) -> str | None:
    try:
        return member_id_of(x509.load_pem_x509_certificate(cert_pem.encode()))
    except ValueError:
        return None


def _check_types(action: str, args: dict[str, Any], **expected: type) -> None:
    for key, kind in expected.items():
        if not isinstance(args.get(key), kind):
            raise BadRequest(f"{action}: {key} must be a{'n' if kind is dict else ''} "
                             f"{'object' if kind is dict else 'string'}", code="ProposalFailedToValidate")


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
        """Writes each touched entry; one that is no longer there (a removed member) is deleted."""
        rows = {("version_counter", "[]"): json.dumps(self.state.version_counter)}
        removed: set[tuple[str, str]] = set()
        for kind, *keys in touched:
            value: Any = getattr(self.state, kind)
            for key in keys:
                value = value.get(key, _GONE) if isinstance(value, dict) else _GONE
            if value is _GONE:
                removed.add((kind, json.dumps(keys)))
                rows.pop((kind, json.dumps(keys)), None)
            else:
                removed.discard((kind, json.dumps(keys)))
                rows[(kind, json.dumps(keys))] = json.dumps(value)
        with self.db.transaction() as conn:
            db.upsert_records(conn, ((kind, key, value) for (kind, key), value in rows.items()))
            db.delete_records(conn, removed)

    def close(self) -> None:
        self.db.close()

    def _next_version(self) -> str:
        self.state.version_counter += 1
        return str(self.state.version_counter)

    # -- members
    def add_genesis_member(self, cert_pem: str, identifier: str = "operator") -> str:
        """The network operator, a member from the start (as CCF's genesis member), active and an operator: it
        proposes the other members. Its member data is set once; a restart changes nothing."""
        member_id = member_id_of(x509.load_pem_x509_certificate(cert_pem.encode()))
        with self._change() as touched:
            if member_id not in self.state.members:
                touched.append(("members", member_id))
                self.state.members[member_id] = {"cert": cert_pem, "status": "Active", "name": identifier,
                                                 "member_data": {"identifier": identifier, "isOperator": True}}
        return member_id

    def add_member(self, member_id: str, name: str, cert_pem: str, *, status: str = "Active",
                   member_data: dict[str, Any] | None = None) -> None:
        """A member as a `set_member` proposal leaves it (tests use this to skip the votes)."""
        with self._change() as touched:
            if any(m.get("name") == name for mid, m in self.state.members.items() if mid != member_id):
                raise Conflict(f"a member named {name!r} already exists")
            touched.append(("members", member_id))
            self.state.members[member_id] = {"name": name, "cert": cert_pem, "status": status,
                                             "member_data": member_data or {"identifier": name}}

    def member_name(self, member_id: str) -> str:
        return self.state.members.get(member_id, {}).get("name", member_id[:12])

    def member_named(self, name: str) -> str:
        """The id of the member named `name`; a name no member has stands for itself, so it never matches a
        voter (member names are unique, see `_validate_action`)."""
        return next((mid for mid, m in self.state.members.items() if m.get("name") == name),
                    f"unregistered member {name}")

    def members_view(self) -> list[dict[str, Any]]:
        """`GET /gov/service/members`, as CCF answers it."""
        return [{"memberId": mid, "status": m.get("status", "Active"), "certificate": m["cert"],
                 "memberData": m.get("member_data") or {"identifier": m.get("name", "")}}
                for mid, m in self.state.members.items()]

    def state_digest(self, member_id: str) -> dict[str, str]:
        """`state-digests/{id}:update`: what the member must sign back to become active. CCF gives the ledger's
        Merkle root; the stand-in, which has no ledger, a digest of the governance state and the member's
        request count, so each update asks for a fresh acknowledgement."""
        with self._change() as touched:
            self.require_member(member_id)
            count = int(self.state.acks.get(member_id, {}).get("updates", 0)) + 1
            snapshot = json.dumps({"members": sorted(self.state.members), "version": self.state.version_counter,
                                   "proposals": sorted(self.state.proposals), "member": member_id,
                                   "updates": count}, sort_keys=True)
            digest = hashlib.sha256(snapshot.encode()).hexdigest()
            touched.append(("acks", member_id))
            self.state.acks[member_id] = {"stateDigest": digest, "updates": count}
            return {"memberId": member_id, "stateDigest": digest}

    def ack(self, member_id: str, body: Any) -> None:
        """`state-digests/{id}:ack`: the member signed the digest it was last given, so it becomes active."""
        with self._change() as touched:
            member = self.require_member(member_id)
            expected = self.state.acks.get(member_id, {}).get("stateDigest")
            if expected is None:
                raise BadRequest("no state digest to acknowledge: call state-digests/{memberId}:update first",
                                 code="StateDigestMissing")
            given = body.get("stateDigest") if isinstance(body, dict) else None
            if given != expected:
                raise BadRequest("the acknowledged state digest is not the one last issued to this member",
                                 code="StateDigestMismatch")
            touched.append(("members", member_id))
            member["status"] = "Active"

    def require_member(self, member_id: str) -> dict[str, Any]:
        member = self.state.members.get(member_id)
        if member is None:
            raise NotFound(f"member {member_id!r} does not exist", code="MemberNotFound")
        return member

    # -- contracts
    def contract(self, contract_id: str) -> dict[str, Any]:
        contract = self.state.contracts.get(contract_id)
        if contract is None:
            raise NotFound(f"contract {contract_id!r} does not exist", code="ContractNotFound")
        return contract

    def contract_view(self, contract_id: str) -> dict[str, Any]:
        """`POST /app/contracts/{id}` as CGS answers it: the accepted contract, else the one an open proposal
        carries (state Proposed), else the draft."""
        contract = self.contract(contract_id)
        if contract["state"] == "Accepted":
            return contract
        proposal, carried = self._open_proposal_carrying("set_contract", "contractId", contract_id, "contract")
        if proposal is not None:
            # (a proposal a stand-in before CGS's shapes stored names no contract: the draft stands for it)
            proposed = carried or contract
            return {"id": contract_id, "state": "Proposed", "data": proposed.get("data"),
                    "version": proposed.get("version", ""), "proposalId": proposal["proposalId"]}
        return {"id": contract_id, "state": "Draft", "data": contract["data"], "version": contract["version"],
                "proposalId": ""}

    def is_accepted(self, contract_id: str) -> bool:
        return self.state.contracts.get(contract_id, {}).get("state") == "Accepted"

    def put_contract(self, contract_id: str, data: Any, version: str | None) -> dict[str, Any]:
        """CGS's rules: an accepted contract never changes (405); an existing draft changes only with the version
        it is at (409 without one, 412 with another). A draft may change while a proposal is open: the proposal
        carries the contract it proposes, so what is accepted is what the members voted on."""
        with self._change() as touched:
            existing = self.state.contracts.get(contract_id)
            if existing is not None:
                if existing["state"] == "Accepted":
                    raise CcrError("An accepted contract cannot be changed.", code="ContractAlreadyAccepted",
                                   http_status=405)
                if not version:
                    raise Conflict("The specified contract already exists. To update it, pass the version it is "
                                   "at.", code="ContractAlreadyExists")
                if version != existing["version"]:
                    raise CcrError(f"contract {contract_id!r} is at version {existing['version']}, not {version}",
                                   code="PreconditionFailed", http_status=412)
            contract = {"id": contract_id, "data": data, "version": self._next_version(), "state": "Draft",
                        "proposalId": "", "finalVotes": []}
            touched.append(("contracts", contract_id))
            self.state.contracts[contract_id] = contract
            return contract

    # -- proposals
    def create_proposal(self, proposer: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
        with self._change() as touched:
            if not actions:
                raise BadRequest("a proposal needs at least one action", code="ProposalFailedToValidate")
            for action in actions:
                self._validate_action(action)
            self._check_deployment_proposer(proposer, actions)
            analytics.check_proposal(self, proposer, actions)
            proposal_id = secrets.token_hex(32)
            proposal = {"proposalId": proposal_id, "proposerId": proposer, "actions": actions, "state": "Open",
                        "ballots": {}}
            touched.append(("proposals", proposal_id))
            self.state.proposals[proposal_id] = proposal
            self._resolve(proposal, touched)
            return proposal

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        proposal = self.state.proposals.get(proposal_id)
        if proposal is None:
            raise NotFound(f"proposal {proposal_id!r} does not exist", code="ProposalNotFound")
        return proposal

    def vote(self, proposal_id: str, member_id: str, accept: bool) -> dict[str, Any]:
        with self._change() as touched:
            proposal = self.proposal(proposal_id)
            if proposal["state"] != "Open":
                raise BadRequest(f"proposal {proposal_id} is {proposal['state']}, not open",
                                 code="ProposalNotOpen")
            if member_id in proposal["ballots"]:
                if proposal["ballots"][member_id] == accept:
                    return proposal  # CCF: the same ballot again changes nothing
                raise BadRequest(f"{self.member_name(member_id)} already submitted a different ballot on proposal "
                                 f"{proposal_id}", code="VoteAlreadyExists")
            deciders = self._deciders(proposal)
            if deciders is not None and member_id not in deciders and self._deployment_contract(proposal):
                raise Forbidden(f"{self.member_name(member_id)} is not a member of contract "
                                f"{self._deployment_contract(proposal)!r}: only its members vote on its deployment",
                                code="NotContractMember")
            touched.append(("proposals", proposal_id))
            proposal["ballots"][member_id] = accept
            self._resolve(proposal, touched)
            return proposal

    def withdraw(self, proposal_id: str, member_id: str) -> dict[str, Any]:
        with self._change() as touched:
            proposal = self.proposal(proposal_id)
            if proposal["proposerId"] != member_id:
                raise Forbidden(f"only the proposer may withdraw proposal {proposal_id}", code="AuthorizationFailed")
            if proposal["state"] != "Open":
                raise BadRequest(f"proposal {proposal_id} is {proposal['state']}, not open", code="ProposalNotOpen")
            touched.append(("proposals", proposal_id))
            proposal["state"] = "Withdrawn"
            return proposal

    def _resolve(self, proposal: dict[str, Any], touched: Touched) -> None:
        outcome = constitution.resolve(proposal, self.state.members, already_claimed=self._claimed_elsewhere(proposal),
                                       member_id_of_cert=_member_id_of_pem, deciders=self._deciders(proposal))
        if outcome == "Open":
            return
        if outcome == "Rejected":
            proposal["state"] = "Rejected"
            return
        try:
            for action in proposal["actions"]:
                self._apply(action["name"], action["args"], touched, proposal)
        except CcrError as exc:
            # CCF: an action that fails to apply leaves the proposal Failed and applies none of it. Nothing of
            # this change is written yet, so memory is read back and only the proposal (with its ballots) kept.
            self._reload()
            proposal["state"] = "Failed"
            proposal["failure"] = {"reason": exc.message}
            self.state.proposals[proposal["proposalId"]] = proposal
            touched[:] = [("proposals", proposal["proposalId"])]
            return
        proposal["state"] = "Accepted"

    def _claimed_elsewhere(self, proposal: dict[str, Any]):
        def claimed(kind: str, item_id: str) -> bool:
            if kind == "contract" and self.is_accepted(item_id):
                return True
            if kind == "document" and self.state.documents.get(item_id, {}).get("state") == "Accepted":
                return True
            name, key = ("set_contract", "contractId") if kind == "contract" else ("set_member_document", "documentId")
            return any(p["state"] == "Open" and pid != proposal["proposalId"]
                       and any(a["name"] == name and a["args"].get(key) == item_id for a in p["actions"])
                       for pid, p in self.state.proposals.items())
        return claimed

    def _open_proposal_carrying(self, name: str, key: str, item_id: str, carried: str
                                ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The open proposal whose `name` action is about `item_id` (by `args[key]`), and the object that action
        carries (`args[carried]`: the whole contract or document); (None, None) when none is open."""
        for proposal in self.state.proposals.values():
            if proposal["state"] != "Open":
                continue
            for action in proposal["actions"]:
                if action["name"] == name and action["args"].get(key) == item_id:
                    return proposal, action["args"].get(carried)
        return None, None

    def _validate_action(self, action: dict[str, Any]) -> None:
        """What CGS's `validate` of each action checks (a 400 ProposalFailedToValidate), before anyone votes."""
        name, args = action.get("name"), action.get("args")
        if name not in ACTIONS:
            raise BadRequest(f"unknown action {name!r}; known: {', '.join(ACTIONS)}", code="ProposalFailedToValidate")
        if not isinstance(args, dict):
            raise BadRequest(f"action {name}: args must be an object", code="ProposalFailedToValidate")
        if name == "set_member":
            if _member_id_of_pem(str(args.get("cert", ""))) is None:
                raise BadRequest("set_member: cert must be a PEM certificate", code="ProposalFailedToValidate")
            if not isinstance(args.get("member_data", {}), dict):
                raise BadRequest("set_member: member_data must be an object", code="ProposalFailedToValidate")
            # A member's name stands for it where documents name members (a dataset's owner): one name, one member.
            member_id = _member_id_of_pem(str(args["cert"]))
            identifier = (args.get("member_data") or {}).get("identifier")
            if identifier and any(m.get("name") == identifier for mid, m in self.state.members.items()
                                  if mid != member_id):
                raise BadRequest(f"set_member: a member named {str(identifier)[:64]!r} already exists",
                                 code="ProposalFailedToValidate")
            # A member by identity (see `invitations`): the identity it claims is the one its invitation bound.
            claimed = (args.get("member_data") or {}).get("identity")
            bound = identities.bound_identity(self.db, str(member_id)) if claimed is not None else None
            if claimed is not None and (bound is None or bound["identity"] != claimed or bound["name"] != identifier):
                raise BadRequest("set_member: member_data.identity must be the identity an accepted invitation bound "
                                 "to this certificate, under the name it was invited as",
                                 code="ProposalFailedToValidate")
            return
        if name == "remove_member":
            if _member_id_of_pem(str(args.get("cert", ""))) not in self.state.members:
                raise BadRequest("remove_member: cert is not a member's", code="ProposalFailedToValidate")
            return
        if name == "set_member_document":
            _check_types(name, args, documentId=str, document=dict)
            _check_types(name, args["document"], contractId=str)
            self.contract(args["document"]["contractId"])
            return
        if name in ("enable_oidc_issuer",):
            _check_types(name, args, kid=str)
            return
        if name == "set_oidc_issuer_url":
            _check_types(name, args, issuer_url=str)
            return
        if name == "oidc_issuer_enable_rotate_signing_key":
            return
        _check_types(name, args, contractId=str)
        contract_id = args["contractId"]
        if name == "set_contract":
            _check_types(name, args, contract=dict)
            return
        contract = self.contract(contract_id)
        if contract["state"] != "Accepted":
            raise BadRequest(f"{name} can only be proposed once contract '{contract_id}' has been accepted.",
                             code="ProposalFailedToValidate")
        if name == "ca_enable_rotate_signing_key" and self.state.ca.get(contract_id, {}).get("enabled") != "true":
            raise BadRequest("Cannot rotate the CA signing key as CA is not enabled for the contract.",
                             code="ProposalFailedToValidate")
        if name == "set_deployment_spec":
            spec = args.get("spec")
            if not isinstance(spec, dict) or not isinstance(spec.get("data"), dict) or not spec["data"]:
                raise BadRequest("set_deployment_spec: spec must be {data: <the ARM template, a non-empty object>}",
                                 code="ProposalFailedToValidate")
        if name == "set_clean_room_policy":
            if args.get("type") not in ("add", "remove"):
                raise BadRequest(f"Clean Room Policy with type '{args.get('type')}' is not supported",
                                 code="ProposalFailedToValidate")
            claims = args.get("claims")
            if not isinstance(claims, dict) or not claims:
                raise BadRequest("set_clean_room_policy: claims must be a non-empty object",
                                 code="ProposalFailedToValidate")
            for claim, values in claims.items():
                if claim not in POLICY_CLAIMS:
                    raise BadRequest(f"the claim {claim!r} is not an allowed claim", code="ProposalFailedToValidate")
                for value in values if isinstance(values, list) else [values]:
                    if not isinstance(value, POLICY_CLAIMS[claim]):
                        raise BadRequest(f"claim {claim!r}: {value!r} is not a {POLICY_CLAIMS[claim].__name__}",
                                         code="ProposalFailedToValidate")

    # -- who decides a deployment spec
    @staticmethod
    def _deployment_contract(proposal: dict[str, Any]) -> str | None:
        return next((a["args"]["contractId"] for a in proposal["actions"] if a["name"] == "set_deployment_spec"),
                    None)

    def contract_members(self, contract_id: str) -> set[str]:
        """The member ids of the contract's named members (`data.contract.members` of a ccr spec); a name no
        registered member has stays in the set as itself, so it can never be counted as voted. A contract
        that names no members is every member's that is not an operator."""
        data = self.contract(contract_id).get("data")
        contract = data.get("contract") if isinstance(data, dict) else None
        named = contract.get("members") if isinstance(contract, dict) else None
        if not isinstance(named, list) or not named or not all(isinstance(n, str) for n in named):
            return {mid for mid, m in self.state.members.items() if not constitution.is_operator(m)}
        by_name = {m.get("name"): mid for mid, m in self.state.members.items()}
        return {by_name.get(name, f"unregistered member {name}") for name in named}

    def _deciders(self, proposal: dict[str, Any]) -> set[str] | None:
        """Who decides the proposal when not every member does: a deployment spec's contract members (only
        they may vote), an analytics document's owners (anyone may vote, only theirs count)."""
        contract_id = self._deployment_contract(proposal)
        if contract_id is not None:
            return self.contract_members(contract_id)
        documents = [a["args"]["document"] for a in proposal["actions"] if a["name"] == "set_member_document"]
        return analytics.deciders(self, documents[0]) if len(documents) == 1 == len(proposal["actions"]) else None

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

    def _apply(self, name: str, args: dict[str, Any], touched: Touched, proposal: dict[str, Any]) -> None:
        proposal_id = proposal["proposalId"]
        votes = [{"memberId": m, "vote": v} for m, v in proposal["ballots"].items()]
        if name == "set_member":
            cert_pem = str(args["cert"])
            member_id = _member_id_of_pem(cert_pem)
            assert member_id is not None  # validated
            data = dict(args.get("member_data") or {})
            existing = self.state.members.get(member_id, {})
            touched.append(("members", member_id))
            self.state.members[member_id] = {"cert": cert_pem, "member_data": data,
                                             "status": existing.get("status", "Accepted"),
                                             "name": str(data.get("identifier") or member_id[:12])}
            return
        if name == "remove_member":
            member_id = str(_member_id_of_pem(str(args["cert"])))
            touched.extend([("members", member_id), ("acks", member_id)])
            self.state.members.pop(member_id, None)
            self.state.acks.pop(member_id, None)
            return
        if name == "set_contract":
            contract_id = args["contractId"]
            proposed = args["contract"]
            touched.append(("contracts", contract_id))
            self.state.contracts[contract_id] = {
                "id": contract_id, "data": proposed.get("data"), "version": self._next_version(),
                "state": "Accepted", "proposalId": proposal_id, "finalVotes": votes}
            return
        if name == "set_member_document":
            document_id, proposed = args["documentId"], args["document"]
            touched.append(("documents", document_id))
            self.state.documents[document_id] = {
                "id": document_id, "contractId": proposed["contractId"], "data": proposed.get("data"),
                "labels": proposed.get("labels") or {}, "version": self._next_version(), "state": "Accepted",
                "proposalId": proposal_id, "finalVotes": votes}
            return
        if name in ("enable_oidc_issuer", "set_oidc_issuer_url", "oidc_issuer_enable_rotate_signing_key"):
            touched.append(("oidc", "issuer"))
            issuer = self.state.oidc.setdefault("issuer", {})
            if name == "enable_oidc_issuer" and issuer.get("enabled") != "true":
                issuer.update(enabled="true", requestId="1", kid=args["kid"])
            elif name == "set_oidc_issuer_url":
                issuer["issuerUrl"] = args["issuer_url"]
            elif name == "oidc_issuer_enable_rotate_signing_key" and "requestId" in issuer:
                issuer["requestId"] = str(int(issuer["requestId"]) + 1)
            return
        contract_id = args["contractId"]
        if name == "set_deployment_spec":
            touched.append(("deployment_specs", contract_id))
            self.state.deployment_specs[contract_id] = {"data": args["spec"]["data"], "proposalId": proposal_id}
        elif name == "set_clean_room_policy":
            touched.append(("policies", contract_id))
            policy = self.state.policies.setdefault(contract_id, {})
            for claim, values in args["claims"].items():
                values = values if isinstance(values, list) else [values]
                if args["type"] == "add":
                    current = [] if isinstance(values[0], bool) else policy.get(claim, [])
                    policy[claim] = current + [v for v in dict.fromkeys(values) if v not in current]
                    continue
                if claim not in policy:
                    raise BadRequest(f"Cannot remove values of {claim} because the key does not exist in the clean "
                                     "room policy claims")
                if isinstance(values[0], bool):
                    del policy[claim]
                    continue
                missing = [v for v in values if v not in policy[claim]]
                if missing:
                    raise BadRequest(f"Trying to remove value '{missing[0]}' from {policy[claim]} and it does not "
                                     "exist")
                policy[claim] = [v for v in policy[claim] if v not in values]
                if not policy[claim]:
                    del policy[claim]
        elif name == "enable_ca":
            touched.append(("ca", contract_id))
            ca = self.state.ca.setdefault(contract_id, {})
            if ca.get("enabled") != "true":
                ca.update(enabled="true", requestId="1")
        elif name == "ca_enable_rotate_signing_key":
            touched.append(("ca", contract_id))
            ca = self.state.ca[contract_id]
            ca["requestId"] = str(int(ca.get("requestId", "1")) + 1)
        elif name.startswith("set_contract_runtime_options_"):
            _, _, rest = name.partition("set_contract_runtime_options_")
            verb, _, option = rest.partition("_")
            touched.append(("runtime_options", contract_id))
            self.state.runtime_options.setdefault(contract_id, {})[option] = (
                "enabled" if verb == "enable" else "disabled")

    def proposal_view(self, proposal: dict[str, Any]) -> dict[str, Any]:
        """A proposal as CCF's gov API (2024-07-01) answers it."""
        view: dict[str, Any] = {"proposalId": proposal["proposalId"], "proposerId": proposal["proposerId"],
                                "proposalState": proposal["state"], "ballotCount": len(proposal["ballots"]),
                                "finalVotes": dict(proposal["ballots"])}
        if proposal.get("failure"):
            view["failure"] = proposal["failure"]
        return view

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

    def put_document(self, document_id: str, contract_id: str, data: Any, version: str | None,
                     labels: dict[str, str] | None = None) -> dict[str, Any]:
        """As `put_contract`: an accepted document never changes, a draft only at its version."""
        with self._change() as touched:
            analytics.check_labels(labels)
            self.contract(contract_id)
            existing = self.state.documents.get(document_id)
            if existing is not None:
                if existing["state"] == "Accepted":
                    raise CcrError("An accepted document cannot be changed.", code="DocumentAlreadyAccepted",
                                   http_status=405)
                if not version:
                    raise Conflict("The specified document already exists. To update it, pass the version it is "
                                   "at.", code="DocumentAlreadyExists")
                if version != existing["version"]:
                    raise CcrError(f"document {document_id!r} is at version {existing['version']}, not {version}",
                                   code="PreconditionFailed", http_status=412)
            document = {"id": document_id, "contractId": contract_id, "data": data, "labels": labels or {},
                        "version": self._next_version(), "state": "Draft", "proposalId": "", "finalVotes": []}
            touched.append(("documents", document_id))
            self.state.documents[document_id] = document
            return document

    def document_view(self, document_id: str) -> dict[str, Any]:
        """A member document as CGS answers it: accepted, proposed (what the open proposal carries) or draft."""
        document = self.state.documents.get(document_id)
        if document is None:
            raise NotFound("A document with the specified id was not found.", code="DocumentNotFound")
        if document["state"] == "Accepted":
            return {"labels": {}, **document}
        proposal, carried = self._open_proposal_carrying("set_member_document", "documentId", document_id,
                                                         "document")
        if proposal is not None:
            proposed = carried or document
            return {"id": document_id, "contractId": proposed.get("contractId"), "state": "Proposed",
                    "data": proposed.get("data"), "labels": proposed.get("labels") or {},
                    "version": proposed.get("version", ""), "proposalId": proposal["proposalId"]}
        return {"labels": {}, **{key: document[key] for key in ("id", "contractId", "data", "labels", "version",
                                                                 "state", "proposalId") if key in document}}

    def set_document_execution(self, contract_id: str, document_id: str, member_id: str, status: str) -> None:
        """A decider of an accepted analytics document enables or disables its execution consent."""
        with self._change() as touched:
            document = self.state.documents.get(document_id)
            if document is None or document.get("contractId") != contract_id:
                raise NotFound("A document with the specified id was not found.", code="DocumentNotFound")
            if document.get("state") != "Accepted":
                raise BadRequest(f"document {document_id!r} has not been accepted", code="DocumentNotAccepted")
            if member_id not in (analytics.deciders(self, document) or set()):
                raise Forbidden(f"{self.member_name(member_id)} does not decide document {document_id!r}: only the "
                                "owners of the data an analytics document describes or reads enable or disable it",
                                code="NotDocumentOwner")
            touched.append(("document_execution", document_id, member_id))
            self.state.document_execution.setdefault(document_id, {})[member_id] = status

    def document_execution_status(self, contract_id: str, document_id: str) -> dict[str, Any]:
        return analytics.execution_status(self, contract_id, document_id)

    # -- signing keys, created when a member asks after the enabling proposal was accepted
    def set_ca_key(self, contract_id: str, key_pem: str, cert_pem: str, public_pem: str) -> None:
        with self._change() as touched:
            touched.append(("ca", contract_id))
            ca = self.state.ca[contract_id]
            ca.update(key=key_pem, cert=cert_pem, publicKey=public_pem, keyRequestId=ca["requestId"])

    def set_oidc_key(self, key_pem: str, kid: str) -> None:
        with self._change() as touched:
            touched.append(("oidc", "signing_key"))
            self.state.oidc["signing_key"] = {"key": key_pem, "kid": kid,
                                              "keyRequestId": self.state.oidc["issuer"]["requestId"]}
