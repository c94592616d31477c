"""The requests the reference's clients send to CGS, one `Wire` per endpoint, each with where it was read.

`CLIENT` is what cgs-client (the member's client, `src/governance/client/Controllers/*.cs`) sends; `ROOM` is what
the room's governance sidecar (`src/governance/sidecar/Controllers/*.cs`, paths from `GovernanceRoutes.cs`) sends;
`TRANSACTIONS` the commit polling both do. `LEGACY` are paths our older code used that no CGS serves.

Each `Wire` says how the request authenticates (`cose` with its message type, `member_cert` = mTLS with the
member's certificate, `none`, or `room` = the attested envelope in the body), what its body is, whether the
client waits for the write's commit, and where that is written in the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Auth = Literal["cose", "member_cert", "none", "room"]
Body = Literal["empty", "json", "cose", "room_request", "room_signed"]
Commit = Literal["app", "gov", None]


@dataclass(frozen=True)
class Wire:
    id: str
    method: str
    path: str  # a template: {name} matches one path segment
    auth: Auth
    body: Body
    source: str  # file in the reference and the method that sends it
    msg_type: str | None = None
    commit: Commit = None
    query: tuple[str, ...] = ()  # query parameters the reference sends (besides api-version)
    signed_proposal_id: bool = False  # the COSE header names the proposal of the path
    signed_member_id: bool = False  # the path's {memberId} is the signer
    payload_keys: tuple[str, ...] = field(default=())  # top-level keys of the JSON payload / body

    @property
    def gov(self) -> bool:
        return self.path.startswith("/gov/")

    @property
    def versioned(self) -> bool:
        """Carries `?api-version=`: every /gov path but CCF's common `/gov/tx`, which cgs-client polls without
        one (`TrackTransactionStatusAsync`: `gov/tx?transaction_id=`)."""
        return self.gov and self.path != "/gov/tx"

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\\\{[A-Za-z]+\\\}", "[^/]+", re.escape(self.path)) + "$")

    def fill(self, **values: str) -> str:
        return self.path.format(**values)


C = "src/governance/client/Controllers/"
S = "src/governance/sidecar/Controllers/"

CLIENT: tuple[Wire, ...] = (
    # -- governance (CCF's /gov API, COSE Sign1 bodies)
    Wire("gov.proposal.create", "POST", "/gov/members/proposals:create", "cose", "cose",
         C + "ProposalsController.cs CreateProposal (and every *Controller Propose)", msg_type="proposal",
         commit="gov", payload_keys=("actions",)),
    Wire("gov.ballot.submit", "POST", "/gov/members/proposals/{proposalId}/ballots/{memberId}:submit", "cose",
         "cose", C + "ProposalsController.cs Vote", msg_type="ballot", commit="gov", signed_proposal_id=True,
         signed_member_id=True, payload_keys=("ballot",)),
    Wire("gov.proposal.withdraw", "POST", "/gov/members/proposals/{proposalId}:withdraw", "cose", "cose",
         C + "ProposalsController.cs WithdrawProposal (payload null: empty)", msg_type="withdrawal", commit="gov",
         signed_proposal_id=True),
    Wire("gov.statedigest.update", "POST", "/gov/members/state-digests/{memberId}:update", "cose", "cose",
         C + "MembersController.cs GetStateDigestUpdate (payload null: empty)", msg_type="state_digest",
         signed_member_id=True),
    Wire("gov.statedigest.ack", "POST", "/gov/members/state-digests/{memberId}:ack", "cose", "cose",
         C + "MembersController.cs AckStateDigest (payload: the update's answer)", msg_type="ack",
         signed_member_id=True, payload_keys=("memberId", "stateDigest")),
    Wire("gov.proposals.list", "GET", "/gov/members/proposals", "none", "empty",
         C + "ProposalsController.cs GetProposals"),
    Wire("gov.proposal.get", "GET", "/gov/members/proposals/{proposalId}", "none", "empty",
         C + "ProposalsController.cs GetProposals(proposalId)"),
    Wire("gov.proposal.actions", "GET", "/gov/members/proposals/{proposalId}/actions", "none", "empty",
         C + "ProposalsController.cs GetProposalActions"),
    Wire("gov.members.list", "GET", "/gov/service/members", "none", "empty",
         C + "MembersController.cs Get (GetNoAuthClient)"),
    # -- the CGS app (/app, member certificate over TLS)
    Wire("app.contract.put", "PUT", "/app/contracts/{contractId}", "member_cert", "json",
         C + "ContractsController.cs PutContract", commit="app"),
    Wire("app.contract.get", "POST", "/app/contracts/{contractId}", "member_cert", "empty",
         C + "ContractsController.cs GetContract (POST, no body)"),
    Wire("app.contracts.list", "GET", "/app/contracts", "member_cert", "empty",
         C + "ContractsController.cs ListContracts"),
    Wire("app.execution.enable", "POST", "/app/contracts/{contractId}/runtimeoptions/execution/enable",
         "member_cert", "empty", C + "ContractsRuntimeOptionsController.cs EnableExecution", commit="app"),
    Wire("app.execution.disable", "POST", "/app/contracts/{contractId}/runtimeoptions/execution/disable",
         "member_cert", "empty", C + "ContractsRuntimeOptionsController.cs DisableExecution", commit="app"),
    Wire("app.option.status", "POST", "/app/contracts/{contractId}/runtimeoptions/{option}/status", "member_cert",
         "empty", C + "ContractsRuntimeOptionsController.cs ExecutionStatus/LoggingStatus/TelemetryStatus"),
    Wire("app.policy.get", "POST", "/app/contracts/{contractId}/cleanroompolicy", "member_cert", "empty",
         C + "CleanRoomPolicyController.cs GetPolicy"),
    Wire("app.deploymentspec.get", "POST", "/app/contracts/{contractId}/deploymentspec", "none", "empty",
         C + "ContractProposalsController.cs GetProposal(deploymentspec); app.json: no authn"),
    Wire("app.document.put", "PUT", "/app/memberdocuments/{documentId}", "member_cert", "json",
         C + "MemberDocumentsController.cs PutDocument", commit="app"),
    Wire("app.document.get", "GET", "/app/memberdocuments/{documentId}", "member_cert", "empty",
         C + "MemberDocumentsController.cs GetDocument"),
    Wire("app.documents.list", "GET", "/app/memberdocuments", "member_cert", "empty",
         C + "MemberDocumentsController.cs ListDocuments"),
    Wire("app.ca.generatesigningkey", "POST", "/app/contracts/{contractId}/ca/generateSigningKey", "member_cert",
         "empty", C + "CAController.cs GenerateSigningKey", commit="app"),
    Wire("app.ca.status", "POST", "/app/contracts/{contractId}/ca/status", "member_cert", "empty",
         C + "CAController.cs GetInfo (POST ca/status)"),
    Wire("app.events.get", "GET", "/app/contracts/{contractId}/events", "member_cert", "empty",
         C + "EventsController.cs GetEvents (202 + Retry-After retried)",
         query=("id", "scope", "from_seqno", "to_seqno", "max_seqno_per_page")),
    Wire("app.oidc.generatesigningkey", "POST", "/app/oidc/generateSigningKey", "member_cert", "empty",
         C + "OidcController.cs GenerateSigningKey", commit="app"),
    Wire("app.oidc.issuerinfo", "POST", "/app/oidc/issuerInfo", "member_cert", "empty",
         C + "OidcController.cs GetOidcIssuerInfo"),
)

ROOM: tuple[Wire, ...] = (
    Wire("room.option.status", "POST", "/app/contracts/{contractId}/runtimeoptions/{option}/status", "room",
         "room_request", S + "ConsentCheckController.cs ConsentCheck (PrepareRequestContent(report): no key)",
         payload_keys=("attestation", "platform")),
    Wire("room.document.accepted", "POST", "/app/contracts/{contractId}/memberdocuments/accepted/{documentId}",
         "room", "room_request", S + "MemberDocumentsController.cs GetDocument",
         payload_keys=("attestation", "encrypt", "platform")),
    Wire("room.secret.get", "POST", "/app/contracts/{contractId}/secrets/{secretId}", "room", "room_request",
         S + "SecretsController.cs GetSecret", payload_keys=("attestation", "encrypt", "platform")),
    Wire("room.secret.put", "PUT", "/app/contracts/{contractId}/secrets/{secretName}", "room", "room_signed",
         S + "SecretsController.cs PutSecret", commit="app",
         payload_keys=("attestation", "data", "encrypt", "platform", "sign", "timestamp")),
    Wire("room.events.put", "PUT", "/app/contracts/{contractId}/events", "room", "room_signed",
         S + "EventsController.cs PutEvent (query passed through: id, scope)", commit="app", query=("id", "scope"),
         payload_keys=("attestation", "data", "encrypt", "platform", "sign", "timestamp")),
    Wire("room.ca.endorsedcert", "POST", "/app/contracts/{contractId}/ca/generateEndorsedCert", "room",
         "room_signed", S + "CAController.cs GenerateEndorsedCert (answer {value}: wrapped {cert})",
         payload_keys=("attestation", "data", "encrypt", "platform", "sign", "timestamp")),
    Wire("room.oauth.token", "POST", "/app/contracts/{contractId}/oauth/token", "room", "room_request",
         S + "OAuthController.cs GetToken", query=("nbf", "exp", "iat", "jti", "sub", "tid", "aud", "iss"),
         payload_keys=("attestation", "encrypt", "platform")),
)

TRANSACTIONS: tuple[Wire, ...] = (
    Wire("tx.app", "GET", "/app/tx", "none", "empty", "src/governance/*/HttpResponseMessageExtensions.cs "
         "WaitAppTransactionCommittedAsync", query=("transaction_id",)),
    Wire("tx.gov", "GET", "/gov/tx", "none", "empty", "src/governance/client/HttpResponseMessageExtensions.cs "
         "WaitGovTransactionCommittedAsync (no api-version)", query=("transaction_id",)),
)

ALL: tuple[Wire, ...] = CLIENT + ROOM + TRANSACTIONS

# Query parameters our clients add that the reference does not send, each with why it is harmless: CGS's
# handlers read only the parameters they know (events.ts destructures id, scope, from_seqno, to_seqno,
# max_seqno_per_page), so a real CGS ignores these.
EXTENSION_QUERY: dict[str, dict[str, str]] = {
    "app.events.get": {"chain": "the stand-in's hash-chained view of every event of the contract, whatever "
                                "its id and scope (`ccr governance events list` verifies the chain)"},
}

# Paths our own code used before the real wire; a CGS answers them 404.
LEGACY: tuple[tuple[str, str], ...] = (
    ("POST", "/app/contracts/{contractId}/consentcheck/execution"),
    ("POST", "/app/contracts/{contractId}/acceptedMemberDocuments/{documentId}"),
    ("POST", "/app/contracts/{contractId}/checkstatus/execution"),
    ("POST", "/app/contracts/{contractId}/execution/enable"),
    ("GET", "/app/contracts/{contractId}/ca/info"),
)


def matches(method: str, path: str, wires: tuple[Wire, ...] = ALL) -> list[Wire]:
    """Every reference request a (method, path) may be, the most specific template first (a member and a room
    both ask `runtimeoptions/{option}/status`)."""
    found = [w for w in wires if w.method == method and w.pattern().match(path)]
    return sorted(found, key=lambda w: w.path.count("{"))


def match(method: str, path: str, wires: tuple[Wire, ...] = ALL) -> Wire | None:
    """The reference request a (method, path) is, or None; among equals, the first of `wires`."""
    found = matches(method, path, wires)
    return found[0] if found else None
