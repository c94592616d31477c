"""`FirewallClient`: how another sidecar (the launcher) asks the firewall sidecar over HTTP, and the
answers of its API (`VerifyReport`, `FirewallNotInForce`), shared by the sidecar and its callers."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from .errors import Conflict, RemoteServiceError


class FirewallNotInForce(Conflict):
    """The rules in force are not the rules the spec demands (HTTP 409)."""

    code = "FirewallNotInForce"

    def __init__(self, differences: list[str]):
        self.differences = differences
        super().__init__("the firewall rules in force differ from the spec: " + "; ".join(differences))


@dataclass(frozen=True)
class VerifyReport:
    backend: str
    netns: str | None
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict:
        return {"ok": self.ok, "backend": self.backend, "netns": self.netns, "differences": self.differences}


class FirewallClient:
    def __init__(self, endpoint: str, *, timeout: float = 10.0):
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
