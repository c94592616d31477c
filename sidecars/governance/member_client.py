"""`CgsMemberClient`: what a contract member does against CGS (or its stand-in), as CGS's own client
(cgs-client) does it: governance writes to CCF's `/gov` API (proposals, ballots, withdrawals, state-digest
acknowledgements), contracts, documents, policy, the CA, the OIDC issuer and events on `/app`. The
`ccr governance` commands and the tests use it.

It speaks as the Azure clean room's cgs-client does: governance writes (`gov_write`) are COSE Sign1
messages signed with the member's key, sent (like `/gov` reads, which need no credentials) on connections
that present no client certificate, as cgs-client's Gov and NoAuth clients do; `/app` requests go on
connections presenting the member's certificate, which is how CGS's `member_cert` endpoints know the
member. Each `/gov` request names `?api-version=2024-07-01` (not `/gov/tx`, which is not versioned, nor
`/app`); and a write that names a transaction (`x-ms-ccf-transaction-id`) is done only once `/app/tx` or
`/gov/tx` says it is committed. `auth="header"` sends the legacy `CCR-Member` signed header
instead, which only a stand-in started with `--allow-signed-header` accepts.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import quote

import httpx

from ..common.ccftx import wait_committed
from ..common.ccfwire import with_api_version
from ..common.cose import CONTENT_TYPE as COSE_CONTENT_TYPE
from ..common.cose import sign_gov_message
from ..common.errors import CcrError, ConfigError, RemoteServiceError
from ..common.memberauth import MemberIdentity
from ..common.transports import http_transport

MemberAuthMode = Literal["cert", "header"]
MEMBER_AUTH_MODES: tuple[str, ...] = ("cert", "header")
# What OpenSSL says when the service refused the certificate this client presented.
_CERT_REFUSED = ("unknown ca", "bad certificate", "certificate unknown", "certificate required")
BALLOT_ACCEPT = "export function vote (proposal, proposerId) { return true }"
BALLOT_REJECT = "export function vote (proposal, proposerId) { return false }"
# How long an events page may keep answering 202 (CGS fetching the range from its ledger).
RETRY_AFTER_TOTAL_S = 60.0


class CgsRequestFailed(CcrError):
    """CGS answered with an error; the message carries its code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"CGS refused ({status} {code}): {message}", code=code, http_status=status)


def _check_next_link(target: Any, seen: set[str]) -> None:
    """A page's `nextLink` is followed only to a new path on the same service: a hostile or broken service
    could otherwise send the client elsewhere (with the member's credentials) or round a loop forever."""
    if not target:
        return
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//") or target in seen:
        raise CgsRequestFailed(502, "InvalidResponse",
                               f"nextLink {str(target)[:80]!r} is not a new path on this service")
    seen.add(target)


class CgsMemberClient:
    def __init__(self, endpoint: str, identity: MemberIdentity, *, ca_bundle: str | None = None,
                 timeout: float = 10.0, auth: MemberAuthMode = "cert"):
        if auth not in MEMBER_AUTH_MODES:
            raise ConfigError(f"member auth {auth!r}: expected one of {', '.join(MEMBER_AUTH_MODES)}")
        self.endpoint = endpoint.rstrip("/")
        self.identity = identity
        self.auth = auth
        tls = identity.tls_context(ca_bundle) if auth == "cert" else None
        #: `/app` connections: they present the member's certificate (with auth="cert").
        self._http = httpx.Client(base_url=self.endpoint, transport=http_transport(ca_bundle, tls=tls),
                                  timeout=timeout)
        #: `/gov` connections: no client certificate (a COSE write is its own credential, reads need none), so
        #: a member not yet registered can read proposals too.
        self._gov = httpx.Client(base_url=self.endpoint, transport=http_transport(ca_bundle), timeout=timeout)

    def close(self) -> None:
        self._http.close()
        self._gov.close()

    def __enter__(self) -> CgsMemberClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def request(self, method: str, target: str, body: Any = None) -> Any:
        """A JSON request to `/app` (the member's certificate authenticates it) or a `/gov` read; a write
        returns once committed."""
        target = with_api_version(target)
        content = b"" if body is None else json.dumps(body).encode()
        headers = {}
        if self.auth == "header":
            headers["authorization"] = self.identity.authorization(method, target, content)
        if body is not None:
            headers["content-type"] = "application/json"
        return self._send(method, target, content, headers)

    def paged(self, first: str, *, max_pages: int = 100_000) -> Iterator[Any]:
        """Every entry of a paged listing (`{value: [...], nextLink}`, as CCF and CGS page), following
        `nextLink` from `first`. A link off this service's paths, one seen before (a loop), or a page that is
        not `{value: [...]}` ends the listing with an error rather than a partial or endless one."""
        target, seen = first, {first}
        for _ in range(max_pages):
            page = self.request("GET", target)
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise CgsRequestFailed(502, "InvalidResponse", f"{first}: a page is not {{value: [...]}}")
            yield from page["value"]
            target = page.get("nextLink") or ""
            if not target:
                return
            _check_next_link(target, seen)
        raise CgsRequestFailed(502, "InvalidResponse", f"{first}: more than {max_pages} pages")

    def gov_write(self, target: str, msg_type: str, payload: Any, *, proposal_id: str | None = None) -> Any:
        """A governance write: `payload` (JSON, or None for none) in a COSE Sign1 message of `msg_type`
        (proposal, ballot, withdrawal, state_digest, ack), `proposal_id` signed for ballots and withdrawals.
        Returns the answer once the write is committed."""
        target = with_api_version(target)
        content = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if self.auth == "header":
            headers = {"authorization": self.identity.authorization("POST", target, content),
                       "content-type": "application/json"}
            return self._send("POST", target, content, headers)
        envelope = sign_gov_message(self.identity.key, self.identity.cert, msg_type, content,
                                    proposal_id=proposal_id)
        return self._send("POST", target, envelope, {"content-type": COSE_CONTENT_TYPE})

    def _send(self, method: str, target: str, content: bytes, headers: dict[str, str]) -> Any:
        gov = target.startswith("/gov")
        http = self._gov if gov else self._http
        try:
            response = http.request(method, target, content=content, headers=headers)
        except httpx.HTTPError as exc:
            refused = isinstance(exc, httpx.RemoteProtocolError) or any(
                alert in str(exc).lower() for alert in _CERT_REFUSED)
            if self.auth == "cert" and not gov and refused:
                # In TLS 1.3 the client learns that its certificate was refused only when it reads: as an
                # alert, or as a connection closed before any answer.
                raise RemoteServiceError("CGS", f"{self.endpoint} refused member {self.identity.name}'s "
                                                f"certificate in TLS (not a member there?): "
                                                f"{exc}") from None
            raise RemoteServiceError("CGS", f"{self.endpoint} unreachable: {exc}") from None
        except ssl.SSLError as exc:
            raise RemoteServiceError("CGS", f"{self.endpoint}: TLS failed: {exc}") from None
        self._raise_for_error(response)
        if method != "GET":
            try:
                wait_committed(http, response, endpoint="/gov/tx" if gov else "/app/tx")
            except httpx.HTTPError as exc:
                raise RemoteServiceError("CGS", f"{self.endpoint}: transaction status unreachable: {exc}") from None
        if not response.content:
            return None
        return response.json()

    @staticmethod
    def _raise_for_error(response: httpx.Response) -> None:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "Error", response.text[:200]
            raise CgsRequestFailed(response.status_code, code, message)

    # -- membership (CCF: a set_member proposal, then the new member acknowledges a state digest)
    def members(self) -> list[dict[str, Any]]:
        """`GET /gov/service/members`: each member's id, status (Accepted, Active), certificate and member data."""
        return self.request("GET", "/gov/service/members")["value"]

    def propose_member(self, cert_pem: str, identifier: str, *, is_operator: bool = False) -> dict[str, Any]:
        """CCF's `set_member` with the member data CGS's tools put: `identifier` (and `isOperator`)."""
        member_data: dict[str, Any] = {"identifier": identifier}
        if is_operator:
            member_data["isOperator"] = True
        return self.propose({"name": "set_member", "args": {"cert": cert_pem, "member_data": member_data}})

    def activate(self) -> None:
        """An accepted member becomes active: it asks for the state digest and signs it back (`:update`, `:ack`),
        as cgs-client's `members/statedigests/ack` does."""
        digest = self.gov_write(f"/gov/members/state-digests/{self.identity.member_id}:update", "state_digest", None)
        self.gov_write(f"/gov/members/state-digests/{self.identity.member_id}:ack", "ack", digest)

    # -- proposals
    def propose(self, *actions: dict[str, Any]) -> dict[str, Any]:
        return self.gov_write("/gov/members/proposals:create", "proposal", {"actions": list(actions)})

    def vote(self, proposal_id: str, accept: bool = True) -> dict[str, Any]:
        return self.gov_write(f"/gov/members/proposals/{quote(proposal_id)}/ballots/{self.identity.member_id}:submit",
                              "ballot", {"ballot": BALLOT_ACCEPT if accept else BALLOT_REJECT},
                              proposal_id=proposal_id)

    def withdraw(self, proposal_id: str) -> dict[str, Any]:
        return self.gov_write(f"/gov/members/proposals/{quote(proposal_id)}:withdraw", "withdrawal", None,
                              proposal_id=proposal_id)

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        return self.request("GET", f"/gov/members/proposals/{quote(proposal_id)}")

    def proposals(self) -> list[dict[str, Any]]:
        return list(self.paged("/gov/members/proposals"))

    def proposal_actions(self, proposal_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/gov/members/proposals/{quote(proposal_id)}/actions")["actions"]

    # -- contracts
    def put_contract(self, contract_id: str, data: Any, version: str | None = None) -> None:
        body: dict[str, Any] = {"data": data}
        if version:
            body["version"] = version
        self.request("PUT", f"/app/contracts/{quote(contract_id)}", body)

    def contract(self, contract_id: str) -> dict[str, Any]:
        return self.request("POST", f"/app/contracts/{quote(contract_id)}")

    def contracts(self, state: str | None = None) -> list[str]:
        query = f"?state={quote(state)}" if state else ""
        return [c["id"] for c in self.paged(f"/app/contracts{query}")]

    def propose_contract(self, contract_id: str, version: str | None = None) -> dict[str, Any]:
        """`set_contract` carrying the contract as CGS shows it now (what the members vote on is what is
        accepted); with `version`, only if the contract is still at it, as cgs-client checks."""
        current = self.contract(contract_id)
        if version is not None and current.get("version") != version:
            raise CgsRequestFailed(400, "ContractModified", f"contract {contract_id!r} is at version "
                                   f"{current.get('version')}, not {version}")
        return self.propose({"name": "set_contract", "args": {"contractId": contract_id, "contract": current}})

    def propose_policy(self, contract_id: str, claims: dict[str, Any], kind: str = "add") -> dict[str, Any]:
        return self.propose({"name": "set_clean_room_policy",
                             "args": {"contractId": contract_id, "type": kind, "claims": claims}})

    def policy(self, contract_id: str) -> dict[str, Any]:
        """The accepted clean-room policy's claims (CGS answers `{proposalIds, policy}`)."""
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/cleanroompolicy")["policy"]

    def set_execution(self, contract_id: str, enabled: bool) -> None:
        self.request("POST", f"/app/contracts/{quote(contract_id)}/runtimeoptions/execution/"
                             f"{'enable' if enabled else 'disable'}")

    def check_status(self, contract_id: str, option: str) -> dict[str, Any]:
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/runtimeoptions/{quote(option)}/status")

    def propose_runtime_option(self, contract_id: str, option: str, enable: bool) -> dict[str, Any]:
        verb = "enable" if enable else "disable"
        return self.propose({"name": f"set_contract_runtime_options_{verb}_{option}",
                             "args": {"contractId": contract_id}})

    def propose_deployment_spec(self, contract_id: str, template: dict[str, Any]) -> dict[str, Any]:
        """azure-cleanroom's `set_deployment_spec`: the ARM template itself, as `spec.data`."""
        return self.propose({"name": "set_deployment_spec",
                             "args": {"contractId": contract_id, "spec": {"data": template}}})

    def deployment_spec(self, contract_id: str) -> dict[str, Any]:
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/deploymentspec")

    # -- the contract CA and the OIDC issuer: enabled by a proposal, then a member asks for the signing key
    def propose_enable_ca(self, contract_id: str) -> dict[str, Any]:
        return self.propose({"name": "enable_ca", "args": {"contractId": contract_id}})

    def generate_ca_signing_key(self, contract_id: str) -> dict[str, Any]:
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/ca/generateSigningKey")

    def ca_status(self, contract_id: str) -> dict[str, Any]:
        """`{enabled, proposalIds}`, and `caCert`, `publicKey` once the signing key exists."""
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/ca/status")

    def propose_enable_oidc_issuer(self, kid: str) -> dict[str, Any]:
        return self.propose({"name": "enable_oidc_issuer", "args": {"kid": kid}})

    def generate_oidc_signing_key(self) -> dict[str, Any]:
        return self.request("POST", "/app/oidc/generateSigningKey")

    def oidc_issuer_info(self) -> dict[str, Any]:
        return self.request("POST", "/app/oidc/issuerInfo")

    # -- secrets and documents
    def put_secret(self, contract_id: str, name: str, value: str) -> str:
        return self.request("PUT", f"/app/contracts/{quote(contract_id)}/secrets/{quote(name)}",
                            {"value": value})["secretId"]

    def put_document(self, document_id: str, contract_id: str, data: Any, version: str | None = None,
                     labels: dict[str, str] | None = None) -> None:
        body: dict[str, Any] = {"contractId": contract_id, "data": data}
        if version:
            body["version"] = version
        if labels:
            body["labels"] = labels
        self.request("PUT", f"/app/memberdocuments/{quote(document_id)}", body)

    def document(self, document_id: str) -> dict[str, Any]:
        return self.request("GET", f"/app/memberdocuments/{quote(document_id)}")

    def propose_document(self, document_id: str) -> dict[str, Any]:
        """`set_member_document` carrying the document as CGS shows it now."""
        return self.propose({"name": "set_member_document",
                             "args": {"documentId": document_id, "document": self.document(document_id)}})

    # -- analytics documents (issue 17): member documents labelled kind dataset|query, decided by data owners
    def propose_analytics_document(self, document_id: str, contract_id: str, kind: str, text: str) -> dict[str, Any]:
        """Writes the draft (so CGS shows it) and proposes `set_member_document` carrying *this* text, not the
        draft read back: another member may rewrite a draft between the two, and what the proposer votes for
        must be what it wrote."""
        labels = {"kind": kind}
        try:
            current = self.document(document_id)
        except CgsRequestFailed as exc:
            if exc.code != "DocumentNotFound":
                raise
            current = None
        if current is None or current.get("state") == "Draft":
            self.put_document(document_id, contract_id, text, current["version"] if current else None, labels)
        return self.propose({"name": "set_member_document", "args": {
            "documentId": document_id, "document": {"contractId": contract_id, "data": text, "labels": labels}}})

    def contract_documents(self, contract_id: str) -> list[str]:
        """The ids of the contract's member documents."""
        return [d["id"] for d in self.paged(f"/app/contracts/{quote(contract_id)}/memberdocuments")]

    def contract_document(self, contract_id: str, document_id: str) -> dict[str, Any]:
        """A document of the contract (accepted, proposed or draft; `labels`, `finalVotes` once accepted)."""
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/memberdocuments/{quote(document_id)}")

    def set_document_execution(self, contract_id: str, document_id: str, enabled: bool) -> None:
        """An owner's per-document execution consent: disable revokes the document, enable clears its own disable."""
        self.request("POST", f"/app/contracts/{quote(contract_id)}/memberdocuments/{quote(document_id)}/"
                             f"runtimeoptions/execution/{'enable' if enabled else 'disable'}")

    def document_status(self, contract_id: str, document_id: str) -> dict[str, Any]:
        """`{status: enabled|disabled, reason: {code, message}}` of a document's execution consent."""
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/memberdocuments/{quote(document_id)}/"
                                    "runtimeoptions/execution/status")

    # -- audit events
    def events(self, contract_id: str, *, page_size: int = 2000) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every event of the contract in order (the stand-in's `chain=true`: whatever their id and scope),
        following nextLink, and the service's head."""
        events: list[dict[str, Any]] = []
        head: dict[str, Any] = {}
        target = f"/app/contracts/{quote(contract_id)}/events?from_seqno=1&max_seqno_per_page={page_size}&chain=true"
        seen = {target}
        while target:
            page = self._events_page(target)
            events.extend(page["value"])
            head = page.get("head", head)
            target = page.get("nextLink") or ""
            _check_next_link(target, seen)
        return events, head

    def _events_page(self, target: str) -> dict[str, Any]:
        """One page; CGS answers 202 with `retry-after` while it fetches a range from its ledger: wait and ask
        again, as cgs-client does, for at most RETRY_AFTER_TOTAL_S."""
        accepted_for_later: list[str] = []  # the retry-after of each 202 answer

        def remember(response: httpx.Response) -> None:
            if response.status_code == 202:
                accepted_for_later.append(response.headers.get("retry-after", ""))

        self._http.event_hooks["response"].append(remember)
        try:
            waited = 0.0
            while True:
                accepted_for_later.clear()
                page = self.request("GET", target)
                if not accepted_for_later:
                    if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                        raise CgsRequestFailed(502, "InvalidResponse", "an events page is not {value: [...]}")
                    return page
                delay = _retry_after_seconds(accepted_for_later[-1])
                if waited + delay > RETRY_AFTER_TOTAL_S:
                    raise CgsRequestFailed(504, "EventsNotReady", f"CGS still fetching events after {waited:.0f} s")
                time.sleep(delay)
                waited += delay
        finally:
            self._http.event_hooks["response"].remove(remember)


def accept_by_all(clients: list[CgsMemberClient], proposal: dict[str, Any]) -> dict[str, Any]:
    """Each client that has not voted yet votes for the proposal while it is open; returns it as it ends."""
    for client in clients:
        if proposal["proposalState"] == "Open" and client.identity.member_id not in proposal.get("finalVotes", {}):
            proposal = client.vote(proposal["proposalId"], True)
    return proposal


def join(operator: CgsMemberClient, clients: list[CgsMemberClient],
         voters: list[CgsMemberClient] = ()) -> list[str]:
    """Each client's identity a member, as in CCF: the operator proposes it (`set_member`), the clients already
    active (and `voters`, other members whose votes a new member needs) accept, and the new member acknowledges
    a state digest to become active. Returns the names newly proposed; what is already so is left alone."""
    status = {m["memberId"]: m["status"] for m in operator.members()}
    joined = []
    for client in clients:
        identity = client.identity
        if identity.member_id not in status:
            proposal = operator.propose_member(identity.cert_pem, identity.name)
            proposal = accept_by_all([c for c in [*clients, *voters]
                                      if status.get(c.identity.member_id) == "Active"], proposal)
            if proposal["proposalState"] != "Accepted":
                raise CgsRequestFailed(409, "MemberNotAccepted", f"set_member {identity.name}: proposal "
                                       f"{proposal['proposalId']} is {proposal['proposalState']}")
            status[identity.member_id] = "Accepted"
            joined.append(identity.name)
        if status[identity.member_id] != "Active":
            client.activate()
            status[identity.member_id] = "Active"
    return joined


def _retry_after_seconds(value: str) -> float:
    """`retry-after` in seconds (1 when absent or not a number, as cgs-client assumes), at most 5."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = 1.0
    if not math.isfinite(seconds):
        seconds = 1.0
    return min(max(seconds, 0.0), 5.0)
