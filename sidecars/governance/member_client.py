"""`CgsMemberClient`: what a contract member does against CGS (or its stand-in). The `ccr governance`
commands and the tests use it.

It speaks as the Azure clean room's cgs-client does: governance writes (`gov_write`) are COSE Sign1
messages signed with the member's key; every connection presents the member's certificate in TLS, which
is how CGS's `/app` endpoints (`member_cert`) know the member (`/gov` reads need no credentials; a COSE
write carries its own); each `/gov` request names `?api-version=2024-07-01` (not `/gov/tx`, which is not
versioned, nor `/app`); and a write that names a transaction (`x-ms-ccf-transaction-id`) is done only once
`/app/tx` or `/gov/tx` says it is committed. `auth="header"` sends the legacy `CCR-Member` signed header
instead, which only a stand-in started with `--allow-signed-header` accepts.
"""

from __future__ import annotations

import json
import ssl
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


class CgsRequestFailed(CcrError):
    """CGS answered with an error; the message carries its code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"CGS refused ({status} {code}): {message}", code=code, http_status=status)


class CgsMemberClient:
    def __init__(self, endpoint: str, identity: MemberIdentity, *, ca_bundle: str | None = None,
                 timeout: float = 10.0, auth: MemberAuthMode = "cert"):
        if auth not in MEMBER_AUTH_MODES:
            raise ConfigError(f"member auth {auth!r}: expected one of {', '.join(MEMBER_AUTH_MODES)}")
        self.endpoint = endpoint.rstrip("/")
        self.identity = identity
        self.auth = auth
        tls = identity.tls_context(ca_bundle) if auth == "cert" else None
        self._http = httpx.Client(base_url=self.endpoint, transport=http_transport(ca_bundle, tls=tls),
                                  timeout=timeout)

    def close(self) -> None:
        self._http.close()

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
        try:
            response = self._http.request(method, target, content=content, headers=headers)
        except httpx.HTTPError as exc:
            if self.auth == "cert" and (isinstance(exc, httpx.RemoteProtocolError)
                                        or any(alert in str(exc).lower() for alert in _CERT_REFUSED)):
                # In TLS 1.3 the client learns that its certificate was refused only when it reads: as an
                # alert, or as a connection closed before any answer.
                raise RemoteServiceError("CGS", f"{self.endpoint} refused member {self.identity.name}'s "
                                                f"certificate in TLS (is it a registered member there?): "
                                                f"{exc}") from None
            raise RemoteServiceError("CGS", f"{self.endpoint} unreachable: {exc}") from None
        except ssl.SSLError as exc:
            raise RemoteServiceError("CGS", f"{self.endpoint}: TLS failed: {exc}") from None
        self._raise_for_error(response)
        if method != "GET":
            try:
                wait_committed(self._http, response, endpoint="/gov/tx" if target.startswith("/gov") else "/app/tx")
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

    # -- membership
    def register_member(self, name: str, cert_pem: str) -> dict[str, Any]:
        return self.request("POST", "/gov/members", {"name": name, "cert": cert_pem})

    def members(self) -> list[dict[str, Any]]:
        return self.request("GET", "/gov/members")["value"]

    # -- proposals
    def propose(self, *actions: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/gov/members/proposals:create", {"actions": list(actions)})

    def vote(self, proposal_id: str, accept: bool = True) -> dict[str, Any]:
        return self.request("POST", f"/gov/members/proposals/{proposal_id}/ballots/{self.identity.member_id}:submit",
                            {"ballot": "accept" if accept else "reject"})

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        return self.request("GET", f"/gov/members/proposals/{proposal_id}")

    # -- contracts
    def put_contract(self, contract_id: str, data: Any, version: str | None = None) -> None:
        body: dict[str, Any] = {"data": data}
        if version:
            body["version"] = version
        self.request("PUT", f"/app/contracts/{quote(contract_id)}", body)

    def contract(self, contract_id: str) -> dict[str, Any]:
        return self.request("GET", f"/app/contracts/{quote(contract_id)}")

    def propose_contract(self, contract_id: str) -> dict[str, Any]:
        version = self.contract(contract_id)["version"]
        return self.propose({"name": "set_contract", "args": {"contractId": contract_id, "version": version}})

    def propose_policy(self, contract_id: str, claims: dict[str, Any], kind: str = "add") -> dict[str, Any]:
        return self.propose({"name": "set_clean_room_policy",
                             "args": {"contractId": contract_id, "type": kind, "claims": claims}})

    def policy(self, contract_id: str) -> dict[str, Any]:
        return self.request("GET", f"/app/contracts/{quote(contract_id)}/cleanroompolicy")["claims"]

    def set_execution(self, contract_id: str, enabled: bool) -> None:
        self.request("POST", f"/app/contracts/{quote(contract_id)}/execution/{'enable' if enabled else 'disable'}")

    def check_status(self, contract_id: str, option: str) -> dict[str, Any]:
        return self.request("POST", f"/app/contracts/{quote(contract_id)}/checkstatus/{option}")

    def propose_runtime_option(self, contract_id: str, option: str, enable: bool) -> dict[str, Any]:
        verb = "enable" if enable else "disable"
        return self.propose({"name": f"set_contract_runtime_options_{verb}_{option}",
                             "args": {"contractId": contract_id}})

    def propose_deployment_spec(self, contract_id: str, template: dict[str, Any]) -> dict[str, Any]:
        """azure-cleanroom's `set_deployment_spec`: the ARM template itself, as `spec.data`."""
        return self.propose({"name": "set_deployment_spec",
                             "args": {"contractId": contract_id, "spec": {"data": template}}})

    def deployment_spec(self, contract_id: str) -> dict[str, Any]:
        return self.request("GET", f"/app/contracts/{quote(contract_id)}/deploymentspec")

    def propose_enable_ca(self, contract_id: str) -> dict[str, Any]:
        return self.propose({"name": "enable_ca", "args": {"contractId": contract_id}})

    def ca_info(self, contract_id: str) -> dict[str, Any]:
        return self.request("GET", f"/app/contracts/{quote(contract_id)}/ca/info")

    # -- secrets and documents
    def put_secret(self, contract_id: str, name: str, value: str) -> str:
        return self.request("PUT", f"/app/contracts/{quote(contract_id)}/secrets/{quote(name)}",
                            {"value": value})["secretId"]

    def put_document(self, document_id: str, contract_id: str, data: Any, version: str | None = None) -> None:
        body: dict[str, Any] = {"contractId": contract_id, "data": data}
        if version:
            body["version"] = version
        self.request("PUT", f"/app/memberdocuments/{quote(document_id)}", body)

    def document(self, document_id: str) -> dict[str, Any]:
        return self.request("GET", f"/app/memberdocuments/{quote(document_id)}")

    def propose_document(self, document_id: str) -> dict[str, Any]:
        document = self.document(document_id)
        return self.propose({"name": "set_member_document",
                             "args": {"documentId": document_id, "document": {
                                 "contractId": document["contractId"], "version": document["version"]}}})

    # -- audit events
    def events(self, contract_id: str, *, page_size: int = 2000) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every event of the contract in order, following nextLink, and the service's head."""
        events: list[dict[str, Any]] = []
        head: dict[str, Any] = {}
        for page in self._pages(f"/app/contracts/{quote(contract_id)}/events?from_seqno=1"
                                f"&max_seqno_per_page={page_size}"):
            events.extend(page["value"])
            head = page.get("head", head)
        return events, head

    def _pages(self, target: str) -> Iterator[dict[str, Any]]:
        while target:
            page = self.request("GET", target)
            yield page
            target = page.get("nextLink") or ""
