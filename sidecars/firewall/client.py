"""`FirewallClient`: how another sidecar (the launcher) asks the firewall sidecar over HTTP."""

from __future__ import annotations

import httpx

from ..common.errors import RemoteServiceError
from . import FirewallNotInForce, VerifyReport


class FirewallClient:
    def __init__(self, endpoint: str = "http://127.0.0.1:8296", *, timeout: float = 10.0):
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str) -> httpx.Response:
        try:
            return httpx.request(method, f"{self.endpoint}{path}", timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise RemoteServiceError("firewall sidecar", f"{self.endpoint} unreachable: {exc}") from exc

    def status(self) -> dict:
        response = self._call("GET", "/status")
        if response.status_code != 200:
            raise RemoteServiceError("firewall sidecar", f"GET /status answered {response.status_code}",
                                     status=response.status_code)
        return response.json()

    def require_in_force(self) -> VerifyReport:
        """POST /verify; raises FirewallNotInForce (naming each difference) unless the rules are in force."""
        response = self._call("POST", "/verify")
        if response.status_code == 409:
            raise FirewallNotInForce(response.json().get("differences", []))
        if response.status_code != 200:
            raise RemoteServiceError("firewall sidecar", f"POST /verify answered {response.status_code}",
                                     status=response.status_code)
        body = response.json()
        return VerifyReport(body["backend"], body.get("netns"), body.get("differences", []))
