"""The Key Vault stand-in's routers: every area's routes are mounted, and every route challenges a caller
without a token (the official SDKs send a body-less first request and wait for the 401 challenge)."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from sidecars.emulators.keyvault import keys, release, secrets
from sidecars.emulators.keyvault.access import TrustedIssuer
from sidecars.emulators.keyvault.app import build_app

AREAS = (keys, release, secrets)
AUTHORITY = "https://login.example/tenant"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def app() -> FastAPI:
    return build_app(issuers=[TrustedIssuer("https://issuer.example/", {"keys": []})], challenge_authority=AUTHORITY,
                     signer=None, ca_file=None)


def _routes(routes) -> list[tuple[str, str]]:
    return sorted((context.path, method) for context in iter_route_contexts(routes) for method in context.methods or ())


def test_every_area_router_is_mounted(app):
    assert _routes(app.routes) == sorted(route for area in AREAS for route in _routes(area.router.routes))
    assert all(_routes(area.router.routes) for area in AREAS)


@pytest.mark.anyio
async def test_every_route_challenges_a_caller_without_a_token(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://vault") as client:
        for path, method in _routes(app.routes):
            answer = await client.request(method, re.sub(r"\{\w+\}", "x", path) + "?api-version=7.4")
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"] == \
                f'Bearer authorization="{AUTHORITY}", resource="https://vault.azure.net"', (method, path)
