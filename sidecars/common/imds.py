"""`ImdsCredential`: Azure access tokens from an IMDS-shaped endpoint (the room's identity sidecar), in a
module of its own so skr gets tokens without importing the storage and Key Vault SDKs."""

from __future__ import annotations

import time

import httpx
from azure.core.credentials import AccessToken, TokenCredential

from .errors import RemoteServiceError


class ImdsCredential(TokenCredential):
    """Tokens from an IMDS-shaped endpoint, such as the room's identity sidecar."""

    def __init__(self, endpoint: str, client_id: str | None = None, *, start_wait_s: float = 30.0):
        """`start_wait_s`: the containers of a group start in no order (Confidential ACI starts them together):
        a refused connection (the identity sidecar is not listening yet) or a 503 (it is, but the room's
        governance is not ready) is tried again this long."""
        self.endpoint = endpoint.rstrip("/")
        self.client_id = client_id
        self.start_wait_s = start_wait_s

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        resource = scopes[0].removesuffix("/.default") if scopes else ""
        params = {"api-version": "2018-02-01", "resource": resource}
        if self.client_id:
            params["client_id"] = self.client_id
        deadline = time.monotonic() + self.start_wait_s
        while True:
            try:
                resp = httpx.get(f"{self.endpoint}/metadata/identity/oauth2/token", params=params,
                                 headers={"Metadata": "true"}, timeout=30)
                # 503: the identity sidecar is up but its governance is not (not attested yet); IMDS clients
                # (azure-identity's ManagedIdentityCredential) retry a 5xx too.
                if resp.status_code != 503 or time.monotonic() >= deadline:
                    break
                time.sleep(0.5)
            except httpx.ConnectError as exc:
                if time.monotonic() >= deadline:
                    raise RemoteServiceError("identity", f"{self.endpoint} unreachable: {exc}") from None
                time.sleep(0.2)
            except httpx.HTTPError as exc:
                raise RemoteServiceError("identity", f"{self.endpoint} unreachable: {exc}") from None
        if resp.status_code != 200:
            raise RemoteServiceError("identity", f"token request failed: HTTP {resp.status_code} {resp.text[:200]}",
                                     status=resp.status_code)
        body = resp.json()
        return AccessToken(body["access_token"], int(body.get("expires_on", time.time() + 600)))
