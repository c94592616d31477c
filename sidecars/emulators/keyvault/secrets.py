"""Secrets under `/secrets`: set, get, list and list versions."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from ...common.bodies import json_body_openapi
from .deps import BodyIn, KeyVault, UnixTime, kv_body, vault_url
from .store import Attributes, SecretVersion, check_name, new_version

log = logging.getLogger("ccr.emulators.keyvault")
MAX_SECRET_BYTES = 25 * 1024
router = APIRouter()


class SecretAttributesIn(BodyIn):
    enabled: bool | None = None
    nbf: UnixTime | None = None
    exp: UnixTime | None = None


class SecretSetIn(BodyIn):
    value: str = Field(json_schema_extra={"maxLength": MAX_SECRET_BYTES})
    content_type: str | None = Field(None, alias="contentType")
    attributes: SecretAttributesIn | None = None
    tags: dict[str, str] | None = None

    @field_validator("value")
    @classmethod
    def _within_limit(cls, value: str) -> str:
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise ValueError(f"a secret value is at most {MAX_SECRET_BYTES} bytes (Key Vault's limit is 25 KB)")
        return value


@router.put("/secrets/{name}", openapi_extra=json_body_openapi(SecretSetIn))
async def set_secret(name: str, body: Annotated[SecretSetIn, kv_body(SecretSetIn)], request: Request,
                     kv: KeyVault) -> dict[str, Any]:
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
