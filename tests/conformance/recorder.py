"""Record what our clients put on the wire, and check each request against the reference's shape for it.

`Recorder` wraps `httpx.Client.send` and `httpx.AsyncClient.send` for the duration of a test, so it sees
every request exactly as httpx is about to write it (method, URL, headers, body) and the answer, whichever
transport, TLS context or client certificate the client set up. `wire_problems` compares one exchange with
the `vectors.Wire` it claims to be and names every difference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
from cryptography import x509

from tests.conformance import reference, vectors
from tests.conformance.reference import GOV_API_VERSION, TRANSACTION_ID_HEADER


@dataclass(frozen=True)
class Exchange:
    request: httpx.Request
    response: httpx.Response

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.request.url.query.decode(), keep_blank_values=True)

    def __str__(self) -> str:
        return f"{self.method} {self.request.url.raw_path.decode()}"


class Recorder:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    @contextmanager
    def recording(self) -> Iterator[Recorder]:
        sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send
        recorder = self

        def send(client: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
            response = sync_send(client, request, **kw)
            response.read()
            recorder.exchanges.append(Exchange(request, response))
            return response

        async def asend(client: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> httpx.Response:
            response = await async_send(client, request, **kw)
            await response.aread()
            recorder.exchanges.append(Exchange(request, response))
            return response

        httpx.Client.send, httpx.AsyncClient.send = send, asend  # type: ignore[method-assign]
        try:
            yield self
        finally:
            httpx.Client.send, httpx.AsyncClient.send = sync_send, async_send  # type: ignore[method-assign]

    def to(self, base_url: str) -> list[Exchange]:
        """The exchanges with one service (our clients also talk to skr, Entra, …)."""
        host = httpx.URL(base_url)
        return [e for e in self.exchanges if (e.request.url.host, e.request.url.port) == (host.host, host.port)]


def wire_problems(exchange: Exchange, wire: vectors.Wire, *, signer_certs: dict[str, x509.Certificate],
                  following: list[Exchange]) -> list[str]:
    """Every way `exchange` differs from what the reference sends for `wire`. `signer_certs` maps member ids
    (= kid) to certificates, to verify COSE signatures; `following` are the exchanges after this one (the commit
    wait must be among them)."""
    problems: list[str] = []
    request, query = exchange.request, exchange.query
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("CCR-Member"):
        problems.append("sends the legacy CCR-Member header")
    if wire.versioned:
        if query.get("api-version") != [GOV_API_VERSION]:
            problems.append(f"/gov request without ?api-version={GOV_API_VERSION} (query {query})")
    elif "api-version" in query:
        problems.append("api-version on an unversioned request (cgs-client sends none on /app and /gov/tx)")
    unexpected = set(query) - set(wire.query) - {"api-version"} - set(vectors.EXTENSION_QUERY.get(wire.id, {}))
    if unexpected:
        problems.append(f"query parameters the reference does not send: {sorted(unexpected)}")
    content_type = request.headers.get("content-type", "")
    body = request.content
    if wire.body == "cose":
        problems += _cose_problems(exchange, wire, content_type, signer_certs)
    elif wire.body == "empty":
        if body:
            problems.append(f"a body where the reference sends none: {body[:80]!r}")
    else:
        if not content_type.startswith("application/json"):
            problems.append(f"content-type {content_type!r}, expected application/json")
        try:
            document = json.loads(body)
        except ValueError:
            return problems + ["body is not JSON"]
        if wire.body in ("room_request", "room_signed"):
            problems += _room_problems(document, wire)
    tx = exchange.response.headers.get(TRANSACTION_ID_HEADER)
    if wire.commit and tx and exchange.response.status_code < 400:
        waited = [e for e in following if e.path == f"/{wire.commit}/tx" and e.query.get("transaction_id") == [tx]]
        if not waited or waited[-1].response.json().get("status") != "Committed":
            problems.append(f"did not wait for {tx} to be Committed at /{wire.commit}/tx")
    return problems


def _cose_problems(exchange: Exchange, wire: vectors.Wire, content_type: str,
                   signer_certs: dict[str, x509.Certificate]) -> list[str]:
    problems = []
    if content_type != "application/cose":
        problems.append(f"content-type {content_type!r}, expected application/cose")
    try:
        envelope = reference.decode_envelope(exchange.request.content)
    except (ValueError, TypeError) as exc:
        return problems + [f"body is not COSE_Sign1: {exc}"]
    header = envelope.protected
    kid = header.get(reference.KID)
    if header.get(reference.ALG) != reference.ES384:
        problems.append(f"alg {header.get(reference.ALG)!r}, expected ES384 (-35)")
    if not isinstance(kid, bytes):
        return problems + [f"kid {kid!r} is not a byte string"]
    cert = signer_certs.get(kid.decode("ascii", "replace"))
    if cert is None:
        problems.append(f"kid {kid!r} is not the hex SHA-256 of a known member certificate")
    else:
        try:
            reference.verify_envelope(exchange.request.content, cert)
        except Exception as exc:  # noqa: BLE001 - any failure to verify is the finding
            problems.append(f"signature does not verify with the kid's certificate: {exc!r}")
    if header.get(reference.MSG_TYPE) != wire.msg_type:
        problems.append(f"ccf.gov.msg.type {header.get(reference.MSG_TYPE)!r}, expected {wire.msg_type!r}")
    created_at = header.get(reference.CREATED_AT)
    if not isinstance(created_at, int) or abs(created_at - time.time()) > 300:
        problems.append(f"ccf.gov.msg.created_at {created_at!r} is not the signing time in Unix seconds (int)")
    segments = exchange.path.split("/")
    if wire.signed_proposal_id:
        path_id = segments[4].split(":")[0]
        if header.get(reference.PROPOSAL_ID) != path_id:
            problems.append(f"ccf.gov.msg.proposal_id {header.get(reference.PROPOSAL_ID)!r} is not the path's "
                            f"{path_id}")
    elif reference.PROPOSAL_ID in header:
        problems.append("ccf.gov.msg.proposal_id on a message that names no proposal")
    if wire.signed_member_id:
        path_member = segments[-1].split(":")[0]
        if kid.decode("ascii", "replace") != path_member:
            problems.append(f"the path's member {path_member} is not the signer {kid!r}")
    if wire.payload_keys:
        try:
            payload = json.loads(envelope.payload)
        except ValueError:
            return problems + [f"payload is not JSON: {envelope.payload[:80]!r}"]
        missing = set(wire.payload_keys) - set(payload)
        if missing:
            problems.append(f"payload lacks {sorted(missing)}")
        standard = (reference.BALLOT_ACCEPT, reference.BALLOT_REJECT)
        if wire.msg_type == "ballot" and payload.get("ballot") not in standard:
            problems.append(f"ballot {payload.get('ballot')!r} is not one of the two standard texts")
    elif wire.msg_type in ("withdrawal", "state_digest") and envelope.payload:
        problems.append(f"{wire.msg_type} with a payload; the reference signs an empty one")
    return problems


def _room_problems(document: Any, wire: vectors.Wire) -> list[str]:
    if not isinstance(document, dict):
        return ["envelope is not a JSON object"]
    problems = []
    missing = set(wire.payload_keys) - set(document)
    if missing:
        problems.append(f"envelope lacks {sorted(missing)}")
    if wire.body == "room_signed" and not missing:
        try:
            reference.verify_room_signature(document)
        except Exception as exc:  # noqa: BLE001 - any failure to verify is the finding
            problems.append(f"sign.signature is not RSA-PSS-SHA256 over the decoded data bytes: {exc!r}")
        if not (isinstance(document["timestamp"], str) and document["timestamp"].isdigit()):
            problems.append(f"timestamp {document['timestamp']!r} is not Unix milliseconds as a string")
        if document["sign"].get("publicKey") != document["encrypt"].get("publicKey"):
            problems.append("sign.publicKey and encrypt.publicKey differ (the reference sends one key)")
    return problems
