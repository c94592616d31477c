"""Admission by attestation: the driver room releases the cluster's shared secret (`spark.authenticate`)
only to an executor room whose attestation shows the executor policy the members accepted.

An executor room makes an RSA key pair, asks its platform for an SNP report with REPORT_DATA[0:32] =
sha256(public key, DER) and posts the evidence with the public key to the driver room's admission port. The
driver verifies the evidence as Azure Attestation does (`attestation.verify`: AMD chain, signature, UVM
endorsement), checks the key binding and the claims below, and answers the secret wrapped to that key
(RSA-OAEP-SHA256), so only the attested room can read it. Anything else is refused with 403 and one audit
record naming the claim that did not match, what was expected and what was presented.

What "accepted" means is the governance's (`ExecutorGovernance`; in a room, `governance.CgsExecutorPolicy`:
the member document the members voted on, read from CGS at each admission). Every decision is recorded in
the driver room's audit file and sent to the governance's audit log; a refusal is answered only once CGS
recorded it (if CGS cannot, the executor is refused all the same).

Without the secret an executor cannot register: the master and the driver refuse its SASL/auth handshake
(`spark.authenticate`), so a room that was refused here cannot join by guessing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..attestation.evidence import Evidence
from ..attestation.verify import Trust, verify_evidence
from ..common.errors import AttestationError, BadRequest, CcrError, Forbidden, PolicyDenied

log = logging.getLogger("ccr.cluster.admission")

MAX_REQUEST_BYTES = 64 * 1024
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
HOST_DATA_CLAIM = "x-ms-sevsnpvm-hostdata"
DEBUG_CLAIM = "x-ms-sevsnpvm-is-debuggable"
REPORT_DATA_CLAIM = "x-ms-sevsnpvm-reportdata"


@dataclass(frozen=True)
class AdmissionPolicy:
    """What an executor room must show: the executor policy's HOST_DATA the members accepted, not debuggable."""

    executor_host_data: str

    def mismatch(self, claims: dict[str, Any]) -> tuple[str, str, str] | None:
        """(claim, expected, presented) of the first claim that does not match, or None."""
        presented = str(claims.get(HOST_DATA_CLAIM, ""))
        if not hmac.compare_digest(presented, self.executor_host_data):
            return HOST_DATA_CLAIM, self.executor_host_data, presented
        if claims.get(DEBUG_CLAIM) is not False:
            return DEBUG_CLAIM, "false", json.dumps(claims.get(DEBUG_CLAIM))
        return None


class ExecutorPolicyUnavailable(PolicyDenied):
    """No accepted executor policy could be read: every executor is refused."""


class ExecutorGovernance(Protocol):
    """Where the accepted executor policy is read and admission decisions are audited."""

    def accepted_policy(self) -> AdmissionPolicy: ...

    def audit(self, record: dict[str, Any]) -> None: ...


def key_binding(public_key_der: bytes) -> bytes:
    return hashlib.sha256(public_key_der).digest()


class Admission:
    """The decision, apart from HTTP: verify, check, wrap; every refusal audited."""

    def __init__(self, governance: ExecutorGovernance, secret: bytes, trust: Trust, audit: Path) -> None:
        self.governance = governance
        self._secret = secret
        self.trust = trust
        self.audit_path = audit
        self._lock = threading.Lock()

    def audit(self, record: dict[str, Any]) -> None:
        with self._lock, open(self.audit_path, "a") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        try:
            self.governance.audit(record)
        except (CcrError, TimeoutError) as exc:
            # the local record stands; the decision (a refusal, or an admission not yet answered) does not wait
            log.warning("the governance did not record %s: %s", record["event"], str(exc)[:200])

    def admit(self, body: Any, peer: str) -> bytes:
        """The secret wrapped to the request's key, or PolicyDenied / BadRequest (audited)."""
        try:
            if not isinstance(body, dict) or not isinstance(body.get("public_key"), str):
                raise BadRequest("the request needs evidence and public_key")
            try:
                public_der = base64.b64decode(body["public_key"], validate=True)
                public_key = serialization.load_der_public_key(public_der)
            except ValueError:
                raise BadRequest("public_key is not a DER public key in base64") from None
            if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < 2048:
                raise BadRequest("public_key must be an RSA key of at least 2048 bits")
            evidence = body.get("evidence")
            if not isinstance(evidence, dict):
                raise BadRequest("evidence must be an object {evidence, endorsements, uvm_endorsements}")
            claims = verify_evidence(Evidence.from_combined(evidence), self.trust)
            report_data = bytes.fromhex(claims[REPORT_DATA_CLAIM])
            if not hmac.compare_digest(report_data[:32], key_binding(public_der)):
                raise PolicyDenied("the evidence does not bind public_key (REPORT_DATA[0:32] is not its sha256)")
            mismatch = self.governance.accepted_policy().mismatch(claims)
            if mismatch:
                claim, expected, presented = mismatch
                self.audit({"event": "cluster.executor.refused", "peer": peer, "claim": claim,
                            "expected": expected, "presented": presented})
                raise PolicyDenied(f"claim {claim} is {presented!r}, the accepted executor policy needs {expected!r}")
        except (AttestationError, BadRequest, ExecutorPolicyUnavailable) as exc:
            self.audit({"event": "cluster.executor.refused", "peer": peer, "reason": str(exc)[:300]})
            raise
        self.audit({"event": "cluster.executor.admitted", "peer": peer, "claim": HOST_DATA_CLAIM,
                    "presented": claims[HOST_DATA_CLAIM]})
        return public_key.encrypt(self._secret, OAEP)


def _handler(admission: Admission) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # a peer that announces a body and stalls holds one thread for at most this long
        timeout = 10

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path != "/admit":
                self._answer(404, {"error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                length = -1
            if not 0 < length <= MAX_REQUEST_BYTES:
                self._answer(400, {"error": f"the body must be 1..{MAX_REQUEST_BYTES} bytes"})
                return
            try:
                body = json.loads(self.rfile.read(length))
            except (ValueError, RecursionError):
                self._answer(400, {"error": "the body is not JSON"})
                return
            try:
                wrapped = admission.admit(body, self.client_address[0])
            except Forbidden as exc:
                self._answer(403, {"error": str(exc)})
            except CcrError as exc:
                self._answer(400, {"error": str(exc)})
            else:
                self._answer(200, {"secret": base64.b64encode(wrapped).decode()})

        def _answer(self, status: int, body: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:  # the audit file says what matters
            return

    return Handler


def serve(admission: Admission, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /admit on (host, port) in a daemon thread; the server (shutdown() to stop)."""
    server = ThreadingHTTPServer((host, port), _handler(admission))
    threading.Thread(target=server.serve_forever, daemon=True, name="cluster-admission").start()
    return server


def join(admission_url: str, get_evidence: Callable[[bytes], Evidence], *, timeout: float = 30.0) -> bytes:
    """The executor room's side: attest with a fresh key bound in, and unwrap the secret the driver sends."""
    key = rsa.generate_private_key(65537, 2048)
    public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    evidence = get_evidence(key_binding(public_der) + bytes(32))
    response = httpx.post(admission_url, json={"evidence": evidence.to_combined(),
                                               "public_key": base64.b64encode(public_der).decode()},
                          timeout=timeout)
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code == 403:
        raise PolicyDenied(f"the driver refused this executor room: {answer.get('error', response.text[:200])}")
    if response.status_code != 200 or not isinstance(answer.get("secret"), str):
        raise CcrError(f"admission answered {response.status_code}: {str(answer.get('error', ''))[:200]}")
    return key.decrypt(base64.b64decode(answer["secret"]), OAEP)
