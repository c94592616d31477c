"""Secrets under `/secrets`: set, get, list and list versions."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from .deps import BodyIn, KeyVault, vault_url
from .store import Attributes, SecretVersion, check_name, new_version

log = logging.getLogger("ccr.emulators.keyvault")
router = APIRouter()


class SecretAttributesIn(BodyIn):
    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None


class SecretSetIn(BodyIn):
    value: str
    content_type: str | None = Field(None, alias="contentType")
    attributes: SecretAttributesIn | None = None
    tags: dict[str, str] | None = None


@router.put("/secrets/{name}")
async def set_secret(name: str, body: SecretSetIn, request: Request, kv: KeyVault) -> dict[str, Any]:
    attrs = body.attributes or SecretAttributesIn()
    secret = SecretVersion(check_name(name, "secret"), new_version(), body.value, body.content_type,
                           Attributes(enabled=attrs.enabled is not False, nbf=attrs.nbf, exp=attrs.exp), body.tags)
    kv.vault.add_secret(secret)
    log.info("secret %s version %s set", name, secret.version)
    return secret.bundle(vault_url(request))


@router.get("/secrets")
async def list_secrets(request: Request, kv: KeyVault) -> dict[str, Any]:
    url = vault_url(request)
    items = []
    for secret in kv.vault.current_secrets():
        item = secret.bundle(url, with_value=False)
        item["id"] = f"{url}/secrets/{secret.name}"
        items.append(item)
    return {"value": items, "nextLink": None}


@router.get("/secrets/{name}/versions")
async def list_secret_versions(name: str, request: Request, kv: KeyVault) -> dict[str, Any]:
    url = vault_url(request)
    return {"value": [s.bundle(url, with_value=False) for s in kv.vault.secret_versions(name)], "nextLink": None}


@router.get("/secrets/{name}")
@router.get("/secrets/{name}/")
async def get_secret(name: str, request: Request, kv: KeyVault) -> dict[str, Any]:
    return kv.vault.secret(name).bundle(vault_url(request))


@router.get("/secrets/{name}/{version}")
async def get_secret_version(name: str, version: str, request: Request, kv: KeyVault) -> dict[str, Any]:
    return kv.vault.secret(name, version).bundle(vault_url(request))
