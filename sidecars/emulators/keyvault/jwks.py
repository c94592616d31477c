"""Fetching signing keys over TLS: JWKS documents by URL and OIDC discovery, cached briefly.

Key Vault fetches an attestation authority's keys when it sees a token from it; caching them for a few
minutes (and refetching once when a token names an unknown `kid`, as after a key rollover) keeps a
release from paying a TLS round trip every time.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from ...common.errors import Forbidden
from ...common.jose import jwks_public_key

CACHE_SECONDS = 300.0


class JwksCache:
    def __init__(self, client: httpx.AsyncClient, ttl: float = CACHE_SECONDS):
        self._client = client
        self._ttl = ttl
        self._documents: dict[str, tuple[float, dict[str, Any]]] = {}

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise Forbidden(f"cannot fetch {what} from {url}: {exc}") from None
        if response.status_code != 200:
            raise Forbidden(f"cannot fetch {what} from {url}: HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise Forbidden(f"{what} at {url} is not JSON") from None
        if not isinstance(document, dict):
            raise Forbidden(f"{what} at {url} is not a JSON object")
        return document

    async def document(self, url: str, what: str = "signing keys", *, refresh: bool = False) -> dict[str, Any]:
        cached = self._documents.get(url)
        if cached and not refresh and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        document = await self._get_json(url, what)
        self._documents[url] = (time.monotonic(), document)
        return document

    async def key(self, jwks_url: str, kid: str | None):
        """The public key `kid` from the JWKS at `jwks_url`; refetches once if it is not there."""
        key = jwks_public_key(await self.document(jwks_url), kid)
        if key is None:
            key = jwks_public_key(await self.document(jwks_url, refresh=True), kid)
        return key

    async def jwks_uri_from_metadata(self, issuer: str) -> str:
        metadata = await self.document(issuer.rstrip("/") + "/.well-known/openid-configuration",
                                       "OpenID metadata")
        uri = metadata.get("jwks_uri")
        if not isinstance(uri, str):
            raise Forbidden(f"OpenID metadata of {issuer} has no jwks_uri")
        return uri
