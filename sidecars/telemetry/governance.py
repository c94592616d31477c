"""The governance sidecar's HTTP API, as the telemetry sidecar uses it: consent checks and audit events.

Only over HTTP (ARCHITECTURE §4): `POST /consentcheck/{logging,telemetry}` → `{status: enabled|disabled,
reason: {code, message}}` and `PUT /events?id=&scope=` (an acknowledged write or an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ..common.errors import RemoteServiceError


@dataclass(frozen=True)
class Consent:
    enabled: bool
    code: str
    message: str


class GovernanceClient:
    def __init__(self, base_url: str, *, timeout: float = 10.0, verify: str | bool = True):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify)

    def consent(self, option: str) -> Consent:
        """Ask now (never cached): consent can be revoked at any moment."""
        body = self._call("POST", f"/consentcheck/{option}", what=f"consent check {option}")
        status = body.get("status") if isinstance(body, dict) else None
        if status not in ("enabled", "disabled"):
            raise RemoteServiceError("governance", f"consent check {option}: unexpected answer {body!r}")
        reason = body.get("reason") or {}
        return Consent(status == "enabled", str(reason.get("code", "")), str(reason.get("message", "")))

    def audit(self, event_id: str, scope: str, event: dict[str, Any]) -> None:
        """Write an audit event; raises unless governance acknowledged it."""
        self._call("PUT", "/events", what="audit event", params={"id": event_id, "scope": scope}, json=event)

    def _call(self, method: str, path: str, *, what: str, **kwargs) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteServiceError("governance", f"{what}: {exc or type(exc).__name__} ({self.base_url})") from None
        if response.status_code >= 300:
            detail = response.text[:300]
            try:
                error = response.json().get("error")
                detail = error.get("message", detail) if isinstance(error, dict) else str(error or detail)
            except (ValueError, AttributeError):
                pass
            raise RemoteServiceError("governance", f"{what}: HTTP {response.status_code}: {detail}",
                                     status=response.status_code)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise RemoteServiceError("governance", f"{what}: answer is not JSON") from None

    def close(self) -> None:
        self._http.close()
