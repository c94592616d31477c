"""`GovernanceClient`: how the other sidecars (and tests, and apps written in Python) use the governance
sidecar's HTTP API. Every privileged step is audited first and does not run if the audit write is not
acknowledged:

    gov = GovernanceClient(room.url("governance"), scope="volumes", token=sidecar_token)
    gov.audit({"event": "mount", "volume": "input"})          # raises AuditNotAcknowledged on no ack
    with gov.audited("mount", volume="input"):                 # audits start, then done or failed
        mount()
    gov.require_consent("execution")                           # raises PolicyDenied unless enabled
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import CcrError, PolicyDenied, RemoteServiceError
from .transports import http_transport


class AuditNotAcknowledged(CcrError):
    """The audit write was not acknowledged by CGS: the step it records must not proceed."""

    code = "AuditNotAcknowledged"
    http_status = 503


@dataclass(frozen=True)
class ConsentStatus:
    status: str
    reason_code: str = ""
    reason_message: str = ""

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"


class GovernanceClient:
    def __init__(self, base_url: str, *, scope: str | None = None, token: str | None = None,
                 event_id: str | None = None, timeout: float = 10.0, start_wait_s: float = 0.0):
        """`start_wait_s`: for a caller starting with the room (containers of a group start in no order), a
        refused connection means governance is not listening yet and is tried again for this long."""
        self.base_url = base_url.rstrip("/")
        self.start_wait_s = start_wait_s
        self.scope, self.event_id = scope, event_id
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=http_transport())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GovernanceClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        deadline = time.monotonic() + self.start_wait_s
        while True:
            try:
                return self._http.request(method, path, **kwargs)
            except httpx.ConnectError as exc:
                if time.monotonic() >= deadline:
                    raise RemoteServiceError("governance", f"{self.base_url} unreachable: {exc}") from None
                time.sleep(0.2)
            except httpx.HTTPError as exc:
                raise RemoteServiceError("governance", f"{self.base_url} unreachable: {exc}") from None

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self._request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "RemoteServiceError", response.text[:200]
            raise RemoteServiceError("governance", f"{code}: {message}", status=response.status_code)
        return response

    # -- audit
    def audit(self, event: dict[str, Any], *, id: str | None = None, scope: str | None = None) -> None:
        """Record `event` in CGS; returns only once the write is acknowledged (committed, see
        `sidecars.governance.cgs_client`), else raises."""
        params = {k: v for k, v in (("id", id or self.event_id), ("scope", scope or self.scope)) if v}
        try:
            response = self._call("PUT", "/events", params=params, json=event)
        except RemoteServiceError as exc:
            raise AuditNotAcknowledged(f"audit write not acknowledged ({exc.message}): the step does not "
                                       "proceed") from None
        if response.status_code not in (200, 201, 204):
            raise AuditNotAcknowledged(f"audit write answered {response.status_code}: the step does not proceed")

    @contextlib.contextmanager
    def audited(self, step: str, **details: Any) -> Iterator[None]:
        """Audit `step` before it runs (no ack: it never runs) and its outcome after."""
        self.audit({"step": step, "phase": "start", **details})
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            self.audit({"step": step, "phase": "failed", "error": str(exc)[:500], **details})
            raise
        self.audit({"step": step, "phase": "done", "seconds": round(time.monotonic() - started, 3), **details})

    def contract_id(self) -> str:
        """The contract the room runs (governance's `GET /status`)."""
        contract = self._call("GET", "/status").json().get("contractId")
        if not isinstance(contract, str) or not contract:
            raise RemoteServiceError("governance", f"{self.base_url}/status names no contract")
        return contract

    # -- consent
    def consent_check(self, option: str = "execution") -> ConsentStatus:
        body = self._call("POST", f"/consentcheck/{option}").json()
        reason = body.get("reason") or {}
        return ConsentStatus(body.get("status", "disabled"), reason.get("code", ""), reason.get("message", ""))

    def require_consent(self, option: str = "execution") -> None:
        status = self.consent_check(option)
        if not status.enabled:
            raise PolicyDenied(f"{option} consent is {status.status}: {status.reason_message or status.reason_code}")

    # -- releases
    def secret(self, secret_id: str) -> str:
        return self._call("POST", f"/secrets/{secret_id}").json()["value"]

    def document(self, document_id: str) -> dict[str, Any]:
        return self._call("POST", f"/documents/{document_id}").json()

    def client_assertion(self, tenant_id: str, *, sub: str | None = None,
                         aud: str = "api://AzureADTokenExchange") -> str:
        params = {"tenantId": tenant_id, "aud": aud, **({"sub": sub} if sub else {})}
        return self._call("POST", "/oauth/token", params=params).json()["value"]

    def endorsed_cert(self, public_key_pem: str, *, subject_name: str = "CN=clean room",
                      subject_alternate_names: list[str] | None = None, validity_days: int = 30) -> dict[str, Any]:
        """`{cert}`: the contract CA's certificate for the key, as CGS answers it (the CA's own certificate is the
        members' to publish, not the room's to hold)."""
        return self._call("POST", "/ca/generateEndorsedCert", json={
            "publicKey": public_key_pem, "subjectName": subject_name,
            "subjectAlternateNames": subject_alternate_names or [], "validityPeriodDays": validity_days}).json()
