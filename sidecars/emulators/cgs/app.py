"""The CGS stand-in's HTTP API: the member-facing governance endpoints and the room-facing endpoints
under `/app/contracts/{id}/…` with the Azure clean room's envelope.

Room-facing requests are verified as the real CGS does: the evidence (report, VCEK chain, UVM
endorsement) must verify, its claims must satisfy the contract's clean-room policy, and REPORT_DATA must
bind the envelope's `encrypt.publicKey`. Beyond the reference: writes sign their timestamp too and are
refused outside the replay window or when seen before, and secrets, documents, tokens and certificates
are released only while execution consent stands. Member requests are signed with the member's key
(see `sidecars.common.memberauth`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ...common.envelope import report_data_for, signed_message, unb64, verify_signature, wrap
from ...common.errors import BadRequest, CcrError, Forbidden, NotFound, Unauthorized
from ...common.http import create_app
from ...common.memberauth import member_id_of, parse_authorization, verify_member_signature
from .audit import AuditLog
from .store import RUNTIME_OPTIONS, Store

log = logging.getLogger("ccr.cgs")
AttestationVerifier = Callable[[dict[str, Any]], dict[str, Any]]
OPERATOR = "operator"


class RoomRefused(CcrError):
    """The reference answers room verification failures with 400 and a code naming the check."""

    http_status = 400


class ReplayGuard:
    """Remembers signatures until their timestamp leaves the window, so each is accepted once. Entries
    expire in arrival order, so pruning costs only what expired."""

    def __init__(self, window_s: float):
        self.window_ms = int(window_s * 1000)
        self._seen: set[bytes] = set()
        self._arrivals: deque[tuple[int, bytes]] = deque()
        self._lock = threading.Lock()

    def check(self, timestamp_ms: int, signature: bytes, what: str) -> None:
        now = int(time.time() * 1000)
        if abs(now - timestamp_ms) > self.window_ms:
            raise RoomRefused(f"{what}: timestamp is {abs(now - timestamp_ms) / 1000:.0f} s away from now; "
                              f"the replay window is {self.window_ms / 1000:g} s", code="TimestampOutOfWindow")
        digest = hashlib.sha256(signature).digest()
        with self._lock:
            # A signature is remembered for two windows after arrival: longer than its timestamp can pass.
            while self._arrivals and now - self._arrivals[0][0] > 2 * self.window_ms:
                self._seen.discard(self._arrivals.popleft()[1])
            if digest in self._seen:
                raise RoomRefused(f"{what}: this signed request was already used (replay)", code="Replayed")
            self._seen.add(digest)
            self._arrivals.append((now, digest))


@dataclass
class CgsConfig:
    replay_window_s: float = 60.0
    token_lifetime_s: int = 3600


class OidcIssuer:
    """The contract-agnostic OIDC issuer that signs federated client assertions for attested rooms."""

    def __init__(self, key: rsa.RSAPrivateKey, issuer: str):
        self.key = key
        self.issuer = issuer
        public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(public_der).hexdigest()[:32]

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()

        def b64u(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "PS256", "kid": self.kid,
                          "n": b64u(numbers.n), "e": b64u(numbers.e)}]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": self.issuer + "/keys", "response_types_supported": ["id_token"],
                "id_token_signing_alg_values_supported": ["PS256"], "subject_types_supported": ["public"]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="PS256", headers={"kid": self.kid, "typ": "JWT"})


def build_app(store: Store, audit: AuditLog, verify_attestation: AttestationVerifier, issuer: OidcIssuer,
              operator_cert: x509.Certificate, config: CgsConfig) -> FastAPI:
    app = create_app("CGS stand-in")
    member_replay = ReplayGuard(config.replay_window_s)
    room_replay = ReplayGuard(config.replay_window_s)
    claims_cache: dict[str, dict[str, Any]] = {}

    # -- member authentication ------------------------------------------------------------------
    async def member(request: Request, *, allow_operator: bool = False) -> tuple[str, bytes]:
        body = await request.body()
        signed = parse_authorization(request.headers.get("authorization"))

        if signed.member_id in store.state.members:
            cert = x509.load_pem_x509_certificate(store.state.members[signed.member_id]["cert"].encode())
            who = signed.member_id
        elif allow_operator and signed.member_id == member_id_of(operator_cert):
            cert, who = operator_cert, OPERATOR
        else:
            raise Unauthorized(f"{signed.member_id[:12]}… is not a member of this consortium")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        verify_member_signature(cert, signed, request.method, target, body)
        try:
            member_replay.check(signed.timestamp_ms, signed.signature, "member request")
        except RoomRefused as exc:
            raise Unauthorized(exc.message) from None
        return who, body

    def json_body(body: bytes) -> dict[str, Any]:
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise BadRequest("body: not JSON") from None
        if not isinstance(value, dict):
            raise BadRequest("body: expected a JSON object")
        return value

    def record(contract_id: str, who: str, action: str, **details: Any) -> None:
        audit.append(contract_id, "cgs", "governance",
                     {"action": action, "member": store.member_name(who) if who != OPERATOR else OPERATOR, **details})

    # -- room verification ----------------------------------------------------------------------
    def verify_room(contract_id: str, body: dict[str, Any], *, signed: bool, needs_key: bool = True,
                    needs_consent: bool = False) -> tuple[bytes | None, Any]:
        attestation = body.get("attestation")
        if not isinstance(attestation, dict):
            raise RoomRefused("Attestation payload must be supplied.", code="AttestationMissing")
        # A room may audit as soon as the policy admits it (so a refused start is on record); everything
        # else needs the accepted contract.
        if needs_key and not store.is_accepted(contract_id):
            raise RoomRefused("Contract does not exist or has not been accepted.", code="ContractNotAccepted")
        cache_key = hashlib.sha256(json.dumps(attestation, sort_keys=True).encode()).hexdigest()
        claims = claims_cache.get(cache_key)
        if claims is None:
            try:
                claims = verify_attestation(attestation)
            except CcrError as exc:
                raise RoomRefused(exc.message, code="VerifySnpAttestationFailed") from None
            if len(claims_cache) >= 1024:  # rooms re-present the same evidence: a small cache suffices
                claims_cache.clear()
            claims_cache[cache_key] = claims
        violation = store.policy_violation(contract_id, claims)
        if violation:
            raise RoomRefused(violation, code="VerifySnpAttestationFailed")
        public_pem = None
        if needs_key or signed:
            encrypt = body.get("encrypt")
            if not isinstance(encrypt, dict) or not isinstance(encrypt.get("publicKey"), str):
                raise RoomRefused("Encrypt payload must be supplied.", code="EncryptionMissing")
            public_pem = unb64(encrypt["publicKey"], "encrypt.publicKey")
            if str(claims.get("x-ms-sevsnpvm-reportdata", "")).lower() != report_data_for(public_pem).hex():
                raise RoomRefused("Attestation report_data value did not match calculated value.",
                                  code="ReportDataMismatch")
        data = None
        if signed:
            sign, data_b64, timestamp = body.get("sign"), body.get("data"), body.get("timestamp")
            if not isinstance(sign, dict):
                raise RoomRefused("Signature payload must be supplied.", code="SignatureMissing")
            if not isinstance(timestamp, str) or not timestamp.isdigit() or len(timestamp) > 13:
                raise RoomRefused("Timestamp must be supplied as milliseconds since the epoch.",
                                  code="TimestampMissing")
            if not isinstance(data_b64, str):
                raise RoomRefused("data must be supplied.", code="DataMissing")
            if unb64(sign.get("publicKey", ""), "sign.publicKey") != public_pem:
                raise RoomRefused("sign.publicKey is not the attested key", code="ReportDataMismatch")
            signature = unb64(sign.get("signature", ""), "sign.signature")
            if not verify_signature(public_pem, signature, signed_message(timestamp, data_b64)):
                raise RoomRefused("Signature verification was not successful.", code="SignatureMismatch")
            room_replay.check(int(timestamp), signature, "signed write")
            try:
                data = json.loads(base64.b64decode(data_b64))
            except ValueError:
                raise RoomRefused("data is not base64 JSON", code="InvalidData") from None
        if needs_consent:
            status = store.execution_status(contract_id)
            if status["status"] != "enabled":
                raise Forbidden(status["reason"]["message"], code=status["reason"]["code"])
        return public_pem, data

    def wrapped(public_pem: bytes, payload: bytes) -> dict[str, str]:
        return {"value": base64.b64encode(wrap(public_pem, payload)).decode()}

    # -- members and proposals ------------------------------------------------------------------
    @app.get("/gov/members")
    async def list_members(request: Request):
        await member(request, allow_operator=True)
        return {"value": [{"memberId": mid, "name": m["name"], "cert": m["cert"]}
                          for mid, m in store.state.members.items()]}

    @app.post("/gov/members")
    async def add_member(request: Request):
        who, body = await member(request, allow_operator=True)
        if who != OPERATOR:
            raise Forbidden("only the network operator registers members")
        data = json_body(body)
        try:
            cert = x509.load_pem_x509_certificate(str(data.get("cert", "")).encode())
        except ValueError:
            raise BadRequest("cert: not a PEM certificate") from None
        name = str(data.get("name") or "")
        if not name:
            raise BadRequest("name: required")
        store.add_member(member_id_of(cert), name, cert.public_bytes(serialization.Encoding.PEM).decode())
        return {"memberId": member_id_of(cert), "name": name}

    @app.post("/gov/members/proposals:create")
    async def create_proposal(request: Request):
        who, body = await member(request)
        proposal = store.create_proposal(who, json_body(body).get("actions") or [])
        for action in proposal["actions"]:
            contract_id = action["args"].get("contractId") or store.state.documents.get(
                action["args"].get("documentId"), {}).get("contractId")
            if contract_id:
                record(contract_id, who, "propose", proposalId=proposal["proposalId"], proposal=action["name"])
        return _proposal_view(proposal)

    @app.get("/gov/members/proposals/{proposal_id}")
    async def get_proposal(proposal_id: str, request: Request):
        await member(request)
        proposal = store.state.proposals.get(proposal_id)
        if proposal is None:
            raise NotFound(f"proposal {proposal_id!r} does not exist", code="ProposalNotFound")
        return _proposal_view(proposal)

    @app.post("/gov/members/proposals/{proposal_id}/ballots/{member_id}:submit")
    async def vote(proposal_id: str, member_id: str, request: Request):
        who, body = await member(request)
        if who != member_id:
            raise Forbidden("a member votes only for itself")
        ballot = json_body(body).get("ballot")
        if ballot not in ("accept", "reject"):
            raise BadRequest("ballot: must be 'accept' or 'reject'")
        proposal = store.vote(proposal_id, who, ballot == "accept")
        for action in proposal["actions"]:
            contract_id = action["args"].get("contractId") or store.state.documents.get(
                action["args"].get("documentId"), {}).get("contractId")
            if contract_id:
                record(contract_id, who, "vote", proposalId=proposal_id, ballot=ballot, state=proposal["state"])
                if proposal["state"] == "Accepted" and action["name"] == "enable_ca":
                    _ensure_ca(contract_id)
        return _proposal_view(proposal)

    def _proposal_view(proposal: dict[str, Any]) -> dict[str, Any]:
        return {"proposalId": proposal["proposalId"], "proposerId": proposal["proposerId"],
                "state": proposal["state"], "actions": proposal["actions"],
                "ballotCount": len(proposal["ballots"]),
                "votes": [{"memberId": m, "vote": v} for m, v in proposal["ballots"].items()]}

    # -- contracts ------------------------------------------------------------------------------
    @app.get("/app/contracts")
    async def list_contracts(request: Request):
        await member(request)
        return [{"id": cid, "state": c["state"]} for cid, c in store.state.contracts.items()]

    @app.put("/app/contracts/{contract_id}")
    async def put_contract(contract_id: str, request: Request):
        who, body = await member(request)
        data = json_body(body)
        if "data" not in data:
            raise BadRequest("data: required")
        contract = store.put_contract(contract_id, data["data"], data.get("version"))
        record(contract_id, who, "put_contract", version=contract["version"])
        return Response(status_code=200)

    @app.get("/app/contracts/{contract_id}")
    async def get_contract(contract_id: str, request: Request):
        await member(request)
        return store.contract(contract_id)

    @app.get("/app/contracts/{contract_id}/cleanroompolicy")
    async def get_policy(contract_id: str, request: Request):
        await member(request)
        store.contract(contract_id)
        return {"claims": store.state.policies.get(contract_id, {})}

    @app.post("/app/contracts/{contract_id}/execution/{verb}")
    async def set_execution(contract_id: str, verb: str, request: Request):
        who, _ = await member(request)
        if verb not in ("enable", "disable"):
            raise NotFound(f"no execution action {verb!r}: use enable or disable")
        store.set_execution(contract_id, who, verb + "d")
        record(contract_id, who, f"execution_{verb}")
        return Response(status_code=200)

    @app.post("/app/contracts/{contract_id}/checkstatus/{option}")
    async def check_status(contract_id: str, option: str, request: Request):
        await member(request)
        return _status(contract_id, option)

    def _status(contract_id: str, option: str) -> dict[str, Any]:
        if option == "execution":
            return store.execution_status(contract_id)
        if option in RUNTIME_OPTIONS:
            return store.option_status(contract_id, option)
        raise NotFound(f"no runtime option {option!r}: execution, logging or telemetry")

    @app.put("/app/contracts/{contract_id}/secrets/{secret_name}")
    async def put_secret(contract_id: str, secret_name: str, request: Request):
        who, body = await member(request)
        secret_id = store.put_secret(contract_id, who, secret_name, str(json_body(body).get("value") or ""))
        record(contract_id, who, "put_secret", secretId=secret_id)
        return {"secretId": secret_id}

    @app.get("/app/contracts/{contract_id}/secrets")
    async def list_secrets(contract_id: str, request: Request):
        await member(request)
        store.contract(contract_id)
        return {"value": [{"secretId": s} for s in store.state.secrets.get(contract_id, {})]}

    @app.put("/app/memberdocuments/{document_id}")
    async def put_document(document_id: str, request: Request):
        who, body = await member(request)
        data = json_body(body)
        if not data.get("contractId"):
            raise BadRequest("ContractId must be specified in document payload.", code="ContractIdMissing")
        if "data" not in data:
            raise BadRequest("data key must be present in document payload.", code="DataMissing")
        document = store.put_document(document_id, data["contractId"], data["data"], data.get("version"))
        record(data["contractId"], who, "put_document", documentId=document_id, version=document["version"])
        return Response(status_code=200)

    @app.get("/app/memberdocuments/{document_id}")
    async def get_document(document_id: str, request: Request):
        await member(request)
        document = store.state.documents.get(document_id)
        if document is None:
            raise NotFound("A document with the specified id was not found.", code="DocumentNotFound")
        return document

    @app.get("/app/contracts/{contract_id}/ca/info")
    async def ca_info(contract_id: str, request: Request):
        await member(request)
        store.contract(contract_id)
        ca = store.state.ca.get(contract_id)
        return {"enabled": ca is not None, "caCert": (ca or {}).get("cert", "")}

    def _ensure_ca(contract_id: str) -> None:
        if store.state.ca.get(contract_id, {}).get("key"):
            return
        key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Azure Clean Room CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=100))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA384()))
        store.set_ca(contract_id,
                     key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode(),
                     cert.public_bytes(serialization.Encoding.PEM).decode())

    # -- events: room writes, member reads -------------------------------------------------------
    @app.put("/app/contracts/{contract_id}/events")
    async def put_event(contract_id: str, request: Request, id: str | None = None, scope: str | None = None):
        body = json_body(await request.body())
        store.contract(contract_id)
        _, data = verify_room(contract_id, body, signed=True, needs_key=False)
        audit.append(contract_id, scope or "", id or contract_id, data, int(body["timestamp"]))
        return Response(status_code=204)

    @app.get("/app/contracts/{contract_id}/events")
    async def get_events(contract_id: str, request: Request, id: str | None = None, scope: str | None = None,
                         from_seqno: int | None = None, to_seqno: int | None = None,
                         max_seqno_per_page: int = 2000):
        await member(request)
        store.contract(contract_id)
        events = audit.events(contract_id)
        head = audit.head(contract_id)

        def matches(event: dict[str, Any]) -> bool:
            return (id is None or event["id"] == id) and (scope is None or event["scope"] == scope)

        if from_seqno is None and to_seqno is None:
            latest = [e for e in events if matches(e)][-1:]
            return {"value": [_event_view(e) for e in latest], "head": head}
        start = from_seqno or 1
        end = to_seqno if to_seqno is not None else head["seqno"]
        if to_seqno is not None and end < start:
            raise BadRequest("to_seqno must be >= from_seqno")
        if max_seqno_per_page < 1:
            raise BadRequest("max_seqno_per_page must be at least 1")
        page_end = min(end, start + max_seqno_per_page - 1)
        page = [_event_view(e) for e in events if start <= e["seqno"] <= page_end and matches(e)]
        result: dict[str, Any] = {"value": page, "head": head}
        if page_end < end:
            next_link = f"/app/contracts/{contract_id}/events?from_seqno={page_end + 1}&to_seqno={end}" \
                        f"&max_seqno_per_page={max_seqno_per_page}"
            next_link += f"&id={id}" if id is not None else ""
            next_link += f"&scope={scope}" if scope is not None else ""
            result["nextLink"] = next_link
        return result

    def _event_view(event: dict[str, Any]) -> dict[str, Any]:
        iso = dt.datetime.fromtimestamp(int(event["timestamp"]) / 1000, dt.UTC).isoformat(timespec="milliseconds")
        return {**event, "timestamp_iso": iso.replace("+00:00", "Z")}

    # -- room-facing reads ----------------------------------------------------------------------
    async def consent(contract_id: str, option: str, request: Request) -> dict[str, Any]:
        body = json_body(await request.body())
        if not isinstance(body.get("attestation"), dict):
            raise RoomRefused("Attestation payload must be supplied.", code="AttestationMissing")
        if store.is_accepted(contract_id):
            verify_room(contract_id, body, signed=False, needs_key=False)
        return _status(contract_id, option)

    app.add_api_route("/app/contracts/{contract_id}/consentcheck/{option}", consent, methods=["POST"])
    app.add_api_route("/app/contracts/{contract_id}/runtimeoptions/{option}/status", consent, methods=["POST"])

    @app.post("/app/contracts/{contract_id}/secrets/{secret_id}")
    async def get_secret(contract_id: str, secret_id: str, request: Request):
        public_pem, _ = verify_room(contract_id, json_body(await request.body()), signed=False, needs_consent=True)
        value = store.state.secrets.get(contract_id, {}).get(secret_id)
        if value is None:
            raise NotFound(f"A secret with the specified id '{secret_id}' was not found.", code="SecretNotFound")
        audit.append(contract_id, "cgs", "release", {"action": "release_secret", "secretId": secret_id})
        return wrapped(public_pem, value.encode())

    async def accepted_document(contract_id: str, document_id: str, request: Request):
        public_pem, _ = verify_room(contract_id, json_body(await request.body()), signed=False, needs_consent=True)
        document = store.state.documents.get(document_id)
        if document is None or document["state"] != "Accepted" or document["contractId"] != contract_id:
            raise NotFound("A document with the specified id was not found or has not been accepted.",
                           code="DocumentNotFound")
        audit.append(contract_id, "cgs", "release", {"action": "release_document", "documentId": document_id})
        return wrapped(public_pem, json.dumps(document).encode())

    app.add_api_route("/app/contracts/{contract_id}/acceptedMemberDocuments/{document_id}", accepted_document,
                      methods=["POST"])
    app.add_api_route("/app/contracts/{contract_id}/memberdocuments/accepted/{document_id}", accepted_document,
                      methods=["POST"])

    @app.post("/app/contracts/{contract_id}/oauth/token")
    async def oauth_token(contract_id: str, request: Request):
        public_pem, _ = verify_room(contract_id, json_body(await request.body()), signed=False, needs_consent=True)
        query = request.query_params
        missing = [p for p in ("sub", "tid", "aud") if not query.get(p)]
        if missing:
            raise BadRequest(f"Value for {missing[0]} is invalid.", code="InvalidInput")
        now = int(time.time())
        claims = {"iss": query.get("iss") or issuer.issuer, "sub": query["sub"], "aud": query["aud"],
                  "tid": query["tid"], "iat": int(query.get("iat") or now), "nbf": int(query.get("nbf") or now),
                  "exp": int(query.get("exp") or now + config.token_lifetime_s),
                  "jti": query.get("jti") or uuid.uuid4().hex}
        audit.append(contract_id, "cgs", "release", {"action": "issue_token", "sub": claims["sub"],
                                                     "aud": claims["aud"], "tid": claims["tid"]})
        return wrapped(public_pem, issuer.sign(claims).encode())

    @app.post("/app/contracts/{contract_id}/ca/generateEndorsedCert")
    async def generate_endorsed_cert(contract_id: str, request: Request):
        public_pem, data = verify_room(contract_id, json_body(await request.body()), signed=True,
                                       needs_consent=True)
        ca = store.state.ca.get(contract_id, {})
        if not ca.get("key"):
            raise NotFound("Cannot generate endorsed certificate as there is no CA signing key for this "
                           "contract.", code="NoCASigningKey")
        if not isinstance(data, dict) or not isinstance(data.get("publicKey"), str):
            raise BadRequest("data.publicKey: a PEM public key is required")
        cert = _endorse(ca, data)
        audit.append(contract_id, "cgs", "release", {"action": "generate_endorsed_cert",
                                                     "subjectName": data.get("subjectName", ""),
                                                     "subjectAlternateNames": data.get("subjectAlternateNames", [])})
        return wrapped(public_pem, json.dumps({"cert": cert, "caCert": ca["cert"]}).encode())

    def _endorse(ca: dict[str, str], data: dict[str, Any]) -> str:
        import ipaddress

        try:
            subject_key = serialization.load_pem_public_key(data["publicKey"].encode())
        except ValueError:
            raise BadRequest("data.publicKey: not a PEM public key") from None
        ca_key = serialization.load_pem_private_key(ca["key"].encode(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca["cert"].encode())
        subject = data.get("subjectName") or "CN=clean room"
        cn = subject[3:] if subject.upper().startswith("CN=") else subject
        sans: list[x509.GeneralName] = []
        for san in data.get("subjectAlternateNames") or []:
            kind, _, value = str(san).partition(":")
            if not value:
                kind, value = "dNSName", kind
            if kind.lower() in ("ipaddress", "ip"):
                sans.append(x509.IPAddress(ipaddress.ip_address(value)))
            else:
                sans.append(x509.DNSName(value))
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(ca_cert.subject).public_key(subject_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=int(data.get("validityPeriodDays") or 30)))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA384()).public_bytes(serialization.Encoding.PEM).decode()

    # -- OIDC issuer ----------------------------------------------------------------------------
    for prefix in ("/oidc", "/app/oidc"):
        app.add_api_route(prefix + "/.well-known/openid-configuration", lambda: issuer.discovery(), methods=["GET"])
        app.add_api_route(prefix + "/keys", lambda: issuer.jwks(), methods=["GET"])

    @app.get("/node/ready/app")
    async def ready():
        return Response(status_code=204)

    return app
