"""The Key Vault REST surface (api-version 7.4 and later) the official SDKs and the skr sidecar use. Each API
area is a router of its own module; `deps` holds the state they share and the bearer-token check."""

from __future__ import annotations

import ssl
from contextlib import asynccontextmanager

import httpx
from fastapi import Depends, FastAPI

from ...common.bodylimit import KIB
from ...common.http import azure_error_body, create_app
from . import keys, release, secrets
from .access import AccessTokenVerifier, EntraService, TrustedIssuer
from .deps import KeyVaultState, authenticate
from .jwks import JwksCache
from .signer import ResponseSigner
from .store import Vault

# The largest bodies are a secret (at most 25 KB, Key Vault's limit, see `secrets`, JSON-escaped) and an imported
# RSA-4096 JWK with its release policy (under 8 KB); a release carries one attestation token.
MAX_BODY_BYTES = 64 * KIB


def build_app(*, issuers: list[TrustedIssuer], challenge_authority: str, signer: ResponseSigner,
              ca_file: str | None, entra: list[EntraService] | None = None) -> FastAPI:
    """`ca_file` verifies TLS when fetching attestation authorities' and token issuers' keys."""
    tls = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    client = httpx.AsyncClient(verify=tls, timeout=10.0)
    jwks = JwksCache(client)
    verifier = AccessTokenVerifier(issuers, jwks, challenge_authority=challenge_authority, entra=entra)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await client.aclose()

    # An app-wide dependency, so that every route, present and future, checks the bearer token first.
    app = create_app("Key Vault stand-in", error_body=azure_error_body, lifespan=lifespan,
                     max_body_bytes=MAX_BODY_BYTES, dependencies=[Depends(authenticate)])
    app.state.keyvault = KeyVaultState(Vault(), verifier, jwks, signer)
    for area in (keys, release, secrets):
        app.include_router(area.router)
    return app
