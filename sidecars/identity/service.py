"""The identity sidecar's endpoints, in the shapes azure-identity's ManagedIdentityCredential
speaks:

- IMDS: `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C]` with header
  `Metadata: true` (point `AZURE_POD_IDENTITY_AUTHORITY_HOST` at the sidecar);
- App Service (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`): `GET /msi/token?api-version=2019-08-01&resource=R`
  with header `X-IDENTITY-HEADER`;
- Cloud Shell / `MSI_ENDPOINT`: `POST /msi/token` form `resource=R` with header `Metadata: true`.

Each token is obtained without any secret: the governance sidecar gets a client assertion from CGS for
the attested room (sub = the contract id unless configured), and the Entra token endpoint exchanges it
under the federated credential the party configured for its client id. A freshly acquired token is
audited (scope `identity`) before it is handed out; no acknowledgement, no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, Request

from ..common.bodylimit import KIB
from ..common.errors import BadRequest, CcrError, RemoteServiceError
from ..common.http import create_app
from ..common.transports import async_http_transport

log = logging.getLogger("ccr.identity")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class IdentityConfig:
    governance_url: str
    entra_endpoint: str
    tenant_id: str | None
    tenants: dict[str, str] = field(default_factory=dict)
    client_id: str | None = None
    subject: str | None = None
    entra_ca_bundle: str | None = None
    identity_header: str | None = None
    sidecar_token: str | None = None


class ImdsError(CcrError):
    """IMDS answers errors as `{error, error_description}`."""


# The IMDS error names for the errors every app answers by itself (a malformed request, an unknown path, a body
# over the limit): IMDS calls all of them `invalid_request`, and a failure on its side `service_unavailable`.
def imds_error_body(exc: CcrError) -> dict[str, Any]:
    error = exc.code if isinstance(exc, ImdsError) else \
        "invalid_request" if exc.http_status < 500 else "service_unavailable"
    return {"error": error, "error_description": exc.message}


# Requests carry their parameters in the query or a small form (`resource`, `client_id`).
MAX_BODY_BYTES = 16 * KIB


def build_app(config: IdentityConfig) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            yield
        finally:
            await gov.aclose()
            await entra.aclose()

    app = create_app("identity sidecar", error_body=imds_error_body, max_body_bytes=MAX_BODY_BYTES, lifespan=lifespan)
    gov_headers = {"authorization": f"Bearer {config.sidecar_token}"} if config.sidecar_token else {}
    gov = httpx.AsyncClient(base_url=config.governance_url.rstrip("/"), headers=gov_headers, timeout=15.0,
                            transport=async_http_transport())
    entra = httpx.AsyncClient(transport=async_http_transport(config.entra_ca_bundle), timeout=15.0)
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    lock = asyncio.Lock()

    async def gov_call(method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = await gov.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ImdsError(f"governance sidecar unreachable: {exc}", code="service_unavailable",
                            http_status=503) from None
        if response.status_code >= 300:
            raise ImdsError(f"governance sidecar answered {response.status_code}: {response.text[:300]}",
                            code="invalid_request" if response.status_code < 500 else "service_unavailable",
                            http_status=400 if response.status_code < 500 else 503)
        return response

    async def acquire(resource: str, client_id: str) -> dict[str, Any]:
        tenant_id = config.tenants.get(client_id) or config.tenant_id
        if not tenant_id:
            raise ImdsError(f"no tenant is known for client_id {client_id}: name it in the spec or pass "
                            "--tenant-id", code="invalid_request", http_status=400)
        params = {"tenantId": tenant_id, "aud": "api://AzureADTokenExchange"}
        if config.subject:
            params["sub"] = config.subject
        assertion = (await gov_call("POST", "/oauth/token", params=params)).json()["value"]
        scope = resource.rstrip("/") + "/.default" if not resource.endswith("/.default") else resource
        url = f"{config.entra_endpoint.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        try:
            response = await entra.post(url, data={
                "grant_type": "client_credentials", "client_id": client_id, "scope": scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
        except httpx.HTTPError as exc:
            raise RemoteServiceError("Entra", f"{url} unreachable: {exc}") from None
        if response.status_code != 200:
            try:
                description = response.json().get("error_description", response.text)
            except ValueError:
                description = response.text
            raise ImdsError(f"Entra refused the federated assertion: {description[:300]}",
                            code="invalid_request", http_status=400)
        token = response.json()
        await gov_call("PUT", "/events", params={"scope": "identity"},
                       json={"event": "token-issued", "clientId": client_id, "resource": resource})
        now = int(time.time())
        expires_in = int(token.get("expires_in", 3600))
        return {"access_token": token["access_token"], "client_id": client_id, "expires_in": str(expires_in),
                "expires_on": str(now + expires_in), "ext_expires_in": str(expires_in), "not_before": str(now),
                "resource": resource, "token_type": "Bearer"}

    async def token_for(resource: str | None, client_id: str | None) -> dict[str, Any]:
        if not resource:
            raise ImdsError("Required query variable 'resource' is missing", code="invalid_request", http_status=400)
        client = client_id or config.client_id
        if not client:
            raise ImdsError("No client_id given and no default identity is configured", code="invalid_request",
                            http_status=400)
        async with lock:
            cached = cache.get((client, resource))
            if cached and int(cached["expires_on"]) - time.time() > 300:
                return {**cached, "expires_in": str(int(cached["expires_on"]) - int(time.time()))}
            token = await acquire(resource, client)
            cache[(client, resource)] = token
            return token

    def scope_to_resource(resource: str | None) -> str | None:
        return resource[: -len("/.default")] if resource and resource.endswith("/.default") else resource

    @app.get("/status")
    async def status() -> dict:
        """Readiness for `ccr room up` and the launcher, as every sidecar has."""
        return {"status": "ok", "tenant_id": config.tenant_id, "default_client_id": config.client_id}

    @app.get("/metadata/identity/oauth2/token")
    async def imds(request: Request, resource: str | None = None, scope: str | None = None,
                   client_id: str | None = None):
        if request.headers.get("metadata", "").lower() != "true":
            raise ImdsError("Required metadata header not specified", code="invalid_request", http_status=400)
        return await token_for(scope_to_resource(resource or scope), client_id)

    @app.get("/msi/token")
    async def app_service(request: Request, resource: str | None = None, client_id: str | None = None):
        presented = request.headers.get("x-identity-header", "")
        if not config.identity_header or not hmac.compare_digest(presented.encode(), config.identity_header.encode()):
            raise ImdsError("X-IDENTITY-HEADER is missing or wrong", code="invalid_request", http_status=401)
        token = await token_for(scope_to_resource(resource), client_id)
        return {k: token[k] for k in ("access_token", "expires_on", "resource", "token_type", "client_id")}

    @app.post("/msi/token")
    async def cloud_shell(request: Request):
        if request.headers.get("metadata", "").lower() != "true":
            raise ImdsError("Required metadata header not specified", code="invalid_request", http_status=400)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if not form.get("resource"):
            raise BadRequest("resource: required")
        return await token_for(scope_to_resource(str(form["resource"])), form.get("client_id"))

    return app
