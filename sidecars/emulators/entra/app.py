"""The Entra stand-in's endpoints.

`POST /{tenant}/oauth2/v2.0/token` (form: grant_type=client_credentials, client_id, scope=RESOURCE/.default,
client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_assertion) answers
`{token_type, expires_in, ext_expires_in, access_token}` when the assertion matches a federated
credential configured for the client id (issuer + subject + audience, as `az identity
federated-credential create` sets them) and verifies against the issuer's published keys (its OIDC
discovery document and JWKS, fetched over HTTPS). The access token carries `aud` = the resource and
`iss` = `https://sts.windows.net/<tenant>/`, as Entra's v1 tokens do. Errors have Entra's shape
(`{error, error_description, error_codes}`, with AADSTS codes).

A person signs in to a public client (a party's workspace) with the authorization code flow and PKCE
(`/{tenant}/oauth2/v2.0/authorize`, then `/token` with `grant_type=authorization_code`): see `signin`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...common.bodylimit import KIB
from ...common.errors import CcrError
from ...common.http import create_app
from ...common.transports import http_transport
from .signin import SignIn, UserSource
from .signin import add_routes as add_signin_routes

log = logging.getLogger("ccr.entra")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"
# A token request is a small form whose largest field is the client assertion (a JWT of a few KB).
MAX_BODY_BYTES = 64 * KIB


class OAuthError(Exception):
    def __init__(self, status: int, error: str, aadsts: int, description: str):
        super().__init__(description)
        self.status, self.error, self.aadsts, self.description = status, error, aadsts, description

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": f"AADSTS{self.aadsts}: {self.description}",
                "error_codes": [self.aadsts], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def aad_error_body(exc: CcrError) -> dict[str, Any]:
    """Entra's shape for the errors every app answers by itself (an unknown path, a malformed request, a body
    over the limit): AADSTS900144-style `invalid_request`, as Entra answers a request it cannot read."""
    return OAuthError(exc.http_status, "invalid_request", 90014, exc.message).body()


@dataclass(frozen=True)
class FederatedCredential:
    client_id: str
    issuer: str
    subject: str
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)

    @classmethod
    def parse(cls, text: str) -> FederatedCredential:
        """`CLIENT_ID,ISSUER,SUBJECT[,AUDIENCE]` (the command-line form)."""
        parts = text.split(",")
        if len(parts) not in (3, 4) or not all(parts):
            raise ValueError(f"{text!r}: expected CLIENT_ID,ISSUER,SUBJECT[,AUDIENCE]")
        return cls(parts[0], parts[1], parts[2], (parts[3],) if len(parts) == 4 else (DEFAULT_AUDIENCE,))


class CredentialSource:
    """Credentials from the command line plus a JSON file re-read when it changes, so a party can add a
    federated credential to a running stand-in (`[{clientId, issuer, subject, audiences}]`)."""

    def __init__(self, fixed: list[FederatedCredential], path: Path | None):
        self.fixed, self.path = fixed, path
        self._mtime: float | None = None
        self._from_file: list[FederatedCredential] = []

    def all(self) -> list[FederatedCredential]:
        if self.path is not None and self.path.exists():
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                entries = json.loads(self.path.read_text() or "[]")
                self._from_file = [FederatedCredential(e["clientId"], e["issuer"], e["subject"],
                                                       tuple(e.get("audiences") or [DEFAULT_AUDIENCE]))
                                   for e in entries]
                self._mtime = mtime
        return self.fixed + self._from_file


class IssuerKeys:
    """Public keys of federated issuers, found through their OIDC discovery documents."""

    def __init__(self, ca_bundle: str | None, ttl_s: float = 300.0):
        self._http = httpx.Client(transport=http_transport(ca_bundle), timeout=5.0)
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self.ttl_s = ttl_s

    def key(self, issuer: str, kid: str | None):
        for refresh in (False, True):
            for entry in self._jwks(issuer, refresh).get("keys", []):
                if kid is None or entry.get("kid") == kid:
                    return jwt.PyJWK(entry).key
        raise OAuthError(401, "invalid_client", 700027, f"the assertion's signing key {kid!r} is not published "
                                                        f"by issuer {issuer}")

    def _jwks(self, issuer: str, refresh: bool) -> dict[str, Any]:
        cached = self._cache.get(issuer)
        if cached and not refresh and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        try:
            config = self._http.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
            config.raise_for_status()
            keys = self._http.get(config.json()["jwks_uri"])
            keys.raise_for_status()
            jwks = keys.json()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise OAuthError(401, "invalid_client", 7000215,
                             f"cannot read the signing keys of issuer {issuer}: {exc}") from None
        self._cache[issuer] = (time.monotonic(), jwks)
        return jwks


class TokenIssuer:
    def __init__(self, key: rsa.RSAPrivateKey, lifetime_s: int = 3600):
        self.key, self.lifetime_s = key, lifetime_s
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def access_token(self, tenant: str, client_id: str, resource: str) -> tuple[str, int]:
        now = int(time.time())
        oid = str(uuid.UUID(hashlib.sha256(f"{tenant}/{client_id}".encode()).hexdigest()[:32]))
        claims = {"aud": resource, "iss": f"https://sts.windows.net/{tenant}/", "iat": now, "nbf": now,
                  "exp": now + self.lifetime_s, "appid": client_id, "appidacr": "2", "idtyp": "app",
                  "oid": oid, "sub": oid, "tid": tenant, "ver": "1.0", "uti": uuid.uuid4().hex}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid}), now

    def id_token(self, issuer: str, tenant: str, client_id: str, email: str, name: str, nonce: str) -> str:
        """A v2.0 ID token for a person signed in to `client_id` (`signin`)."""
        now = int(time.time())
        oid = str(uuid.UUID(hashlib.sha256(f"{tenant}/user/{email}".encode()).hexdigest()[:32]))
        sub = base64.urlsafe_b64encode(hashlib.sha256(f"{oid}/{client_id}".encode()).digest()).rstrip(b"=").decode()
        claims = {"aud": client_id, "iss": issuer, "iat": now, "nbf": now, "exp": now + self.lifetime_s,
                  "oid": oid, "sub": sub, "tid": tenant, "email": email, "preferred_username": email, "name": name,
                  "nonce": nonce, "ver": "2.0", "uti": uuid.uuid4().hex}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def build_app(credentials: CredentialSource, issuer_keys: IssuerKeys, tokens: TokenIssuer,
              base_url: dict[str, str], users: UserSource | None = None) -> FastAPI:
    app = create_app("Entra token stand-in", error_body=aad_error_body, max_body_bytes=MAX_BODY_BYTES)
    signin = SignIn(users or UserSource([], None), tokens, OAuthError, base_url)
    add_signin_routes(app, signin)

    @app.exception_handler(OAuthError)
    async def _oauth_error(_request: Request, exc: OAuthError) -> JSONResponse:
        log.info("refused: %s", exc.description)
        return exc.response()

    @app.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def discovery(tenant: str):
        base = base_url["url"]
        return {"issuer": f"{base}/{tenant}/v2.0", "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys", "response_types_supported": ["code", "token"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
                "code_challenge_methods_supported": ["S256"], "scopes_supported": ["openid", "profile", "email"],
                "id_token_signing_alg_values_supported": ["RS256"], "tenant_region_scope": None}

    @app.get("/{tenant}/discovery/v2.0/keys")
    @app.get("/{tenant}/discovery/keys")
    async def keys(tenant: str):
        return tokens.jwks()

    @app.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return signin.redeem(tenant, form)
        if grant != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", 70003, f"grant_type {grant!r} is not supported")
        client_id = str(form.get("client_id") or "")
        if not client_id:
            raise OAuthError(400, "invalid_request", 900144, "The request body must contain: 'client_id'.")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthError(401, "invalid_client", 7000218,
                             "The request body must contain 'client_assertion' (a federated credential).")
        scope = str(form.get("scope") or "")
        if not scope.endswith("/.default"):
            raise OAuthError(400, "invalid_scope", 1002012, f"scope {scope!r} must be RESOURCE/.default")
        # Fetching an issuer's keys blocks: keep it off the event loop.
        await run_in_threadpool(_verify_assertion, client_id, str(form["client_assertion"]))
        access_token, _ = tokens.access_token(tenant, client_id, scope[: -len("/.default")])
        return {"token_type": "Bearer", "expires_in": tokens.lifetime_s, "ext_expires_in": tokens.lifetime_s,
                "access_token": access_token}

    def _verify_assertion(client_id: str, assertion: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except (jwt.PyJWTError, RecursionError):  # RecursionError: nesting deeper than the JSON parser goes
            raise OAuthError(400, "invalid_client", 50027, "the client assertion is not a JWT") from None
        iss, sub = unverified.get("iss"), unverified.get("sub")
        matches = [c for c in credentials.all() if c.client_id == client_id and c.issuer == iss]
        if not matches:
            raise OAuthError(400, "invalid_client", 700211,
                             f"No matching federated identity record found for presented assertion issuer '{iss}'.")
        matches = [c for c in matches if c.subject == sub]
        if not matches:
            raise OAuthError(400, "invalid_client", 700213,
                             f"No matching federated identity record found for presented assertion subject '{sub}'.")
        key = issuer_keys.key(iss, header.get("kid"))
        try:
            jwt.decode(assertion, key, algorithms=["RS256", "PS256"], audience=list(matches[0].audiences),
                       issuer=iss, options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        except jwt.ExpiredSignatureError:
            raise OAuthError(400, "invalid_client", 700024, "Client assertion is not within its valid time range.") \
                from None
        except jwt.InvalidAudienceError:
            raise OAuthError(400, "invalid_client", 700212, "No matching federated identity record found for "
                             "presented assertion audience.") from None
        except jwt.PyJWTError as exc:
            raise OAuthError(401, "invalid_client", 5002738, f"Client assertion failed validation: {exc}") from None

    return app
