"""Keys under `/keys`: create, import, update, get, list and list versions (secure key release is in
`release`)."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, Request
from pydantic import Field

from ...common.bodies import json_body_openapi
from ...common.errors import BadRequest, Forbidden
from ...common.jose import b64url_decode, curve_for, ec_private_from_jwk, rsa_private_from_jwk
from ...common.release_policy import ReleasePolicy
from .deps import BodyIn, KeyVault, UnixTime, kv_body, vault_url
from .store import (
    DEFAULT_KEY_OPS,
    KEY_TYPES,
    POLICY_CONTENT_TYPE,
    Attributes,
    KeyVersion,
    PrivateKey,
    StoredPolicy,
    Vault,
    check_name,
    family,
    new_version,
    random_oct,
)

log = logging.getLogger("ccr.emulators.keyvault")
RSA_SIZES = (2048, 3072, 4096)
RSA_EXPONENTS = (3, 65537)  # what an RSA key can be generated with (65537 is Key Vault's default)
OCT_SIZES = (128, 192, 256)
router = APIRouter()


class KeyAttributesIn(BodyIn):
    enabled: bool | None = None
    exportable: bool | None = None
    nbf: UnixTime | None = None
    exp: UnixTime | None = None


class ReleasePolicyIn(BodyIn):
    content_type: str | None = Field(None, alias="contentType")
    immutable: bool | None = None
    data: str


class KeyCreateIn(BodyIn):
    # The enums describe the API (the OpenAPI document); `_check_kty` and `_generate` check, with Key Vault's code.
    kty: str = Field(json_schema_extra={"enum": list(KEY_TYPES)})
    key_size: int | None = Field(None, json_schema_extra={"enum": [*RSA_SIZES, *OCT_SIZES]})
    public_exponent: int | None = Field(None, json_schema_extra={"enum": [65537]})
    key_ops: list[str] | None = None
    attributes: KeyAttributesIn | None = None
    tags: dict[str, str] | None = None
    crv: str | None = None
    release_policy: ReleasePolicyIn | None = None


class KeyImportIn(BodyIn):
    key: dict[str, Any]
    hsm: bool | None = None
    attributes: KeyAttributesIn | None = None
    tags: dict[str, str] | None = None
    release_policy: ReleasePolicyIn | None = None


class KeyUpdateIn(BodyIn):
    key_ops: list[str] | None = None
    attributes: KeyAttributesIn | None = None
    tags: dict[str, str] | None = None
    release_policy: ReleasePolicyIn | None = None


@router.post("/keys/{name}/create", openapi_extra=json_body_openapi(KeyCreateIn))
async def create_key(name: str, body: Annotated[KeyCreateIn, kv_body(KeyCreateIn)], request: Request,
                     kv: KeyVault) -> dict[str, Any]:
    _check_kty(body.kty)
    return _store_key(kv.vault, request, name, body.kty, _generate(body), body.key_ops, body.attributes, body.tags,
                      body.release_policy)


@router.put("/keys/{name}", openapi_extra=json_body_openapi(KeyImportIn))
async def import_key(name: str, body: Annotated[KeyImportIn, kv_body(KeyImportIn)], request: Request,
                     kv: KeyVault) -> dict[str, Any]:
    kty, material = _import_material(body.key)
    if body.hsm and not kty.endswith("-HSM"):
        kty += "-HSM"
    ops = body.key.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or not all(isinstance(op, str) for op in ops)):
        raise BadRequest("key.key_ops: expected a list of operation names", code="BadParameter")
    return _store_key(kv.vault, request, name, kty, material, ops, body.attributes, body.tags, body.release_policy)


@router.get("/keys")
async def list_keys(request: Request, kv: KeyVault) -> dict[str, Any]:
    url = vault_url(request)
    items = []
    for key in kv.vault.current_keys():
        item = key.item(url)
        item["kid"] = f"{url}/keys/{key.name}"
        items.append(item)
    return {"value": items, "nextLink": None}


@router.get("/keys/{name}/versions")
async def list_key_versions(name: str, request: Request, kv: KeyVault) -> dict[str, Any]:
    url = vault_url(request)
    return {"value": [k.item(url) for k in kv.vault.key_versions(name)], "nextLink": None}


@router.get("/keys/{name}")
@router.get("/keys/{name}/")
async def get_key(name: str, request: Request, kv: KeyVault) -> dict[str, Any]:
    return kv.vault.key(name).bundle(vault_url(request))


@router.get("/keys/{name}/{version}")
async def get_key_version(name: str, version: str, request: Request, kv: KeyVault) -> dict[str, Any]:
    return kv.vault.key(name, version).bundle(vault_url(request))


@router.patch("/keys/{name}/", openapi_extra=json_body_openapi(KeyUpdateIn))
@router.patch("/keys/{name}/{version}", openapi_extra=json_body_openapi(KeyUpdateIn))
async def update_key(name: str, body: Annotated[KeyUpdateIn, kv_body(KeyUpdateIn)], request: Request, kv: KeyVault,
                     version: str | None = None) -> dict[str, Any]:
    key = kv.vault.key(name, version)
    attrs = body.attributes
    if attrs is not None and attrs.exportable is not None and attrs.exportable != key.attributes.exportable:
        raise BadRequest("attributes.exportable: cannot be changed after the key is created", code="BadParameter")
    if body.release_policy is not None:
        if key.release_policy is not None and key.release_policy.immutable:
            raise Forbidden(f"key {name}: its release policy is immutable", code="Forbidden")
        key.release_policy = _policy(body.release_policy)
    if attrs is not None:
        for field_name in ("enabled", "nbf", "exp"):
            if getattr(attrs, field_name) is not None:
                setattr(key.attributes, field_name, getattr(attrs, field_name))
    if body.key_ops is not None:
        key.key_ops = body.key_ops
    if body.tags is not None:
        key.tags = body.tags
    key.attributes.updated = int(time.time())
    log.info("key %s version %s updated%s", name, key.version,
             " (new release policy)" if body.release_policy is not None else "")
    return key.bundle(vault_url(request))


def _store_key(vault: Vault, request: Request, name: str, kty: str, material: PrivateKey, key_ops: list[str] | None,
               attributes: KeyAttributesIn | None, tags: dict[str, str] | None,
               policy_in: ReleasePolicyIn | None) -> dict[str, Any]:
    policy = _policy(policy_in)
    key = KeyVersion(check_name(name), new_version(), kty, material,
                     key_ops or DEFAULT_KEY_OPS[family(kty)], _attributes(attributes, policy), tags, policy)
    vault.add_key(key)
    log.info("key %s version %s created (%s, exportable=%s, release policy=%s)", name, key.version, kty,
             key.attributes.exportable, "yes" if policy else "no")
    return key.bundle(vault_url(request))


def _policy(body: ReleasePolicyIn | None) -> StoredPolicy | None:
    if body is None:
        return None
    try:
        data = b64url_decode(body.data)
    except BadRequest:
        raise BadRequest("release_policy.data: not base64url", code="BadParameter") from None
    parsed = ReleasePolicy.parse(data)
    return StoredPolicy(data, body.content_type or POLICY_CONTENT_TYPE, bool(body.immutable), parsed)


def _attributes(body: KeyAttributesIn | None, policy: StoredPolicy | None) -> Attributes:
    attrs = body or KeyAttributesIn()
    if attrs.exportable and policy is None:
        raise BadRequest("release_policy: an exportable key needs a release policy", code="BadParameter")
    return Attributes(enabled=attrs.enabled is not False, exportable=bool(attrs.exportable), nbf=attrs.nbf,
                      exp=attrs.exp)


def _check_kty(kty: str) -> str:
    if kty not in KEY_TYPES:
        raise BadRequest(f"kty: {kty!r} is not a key type; use one of {', '.join(KEY_TYPES)}", code="BadParameter")
    return kty


def _generate(body: KeyCreateIn) -> PrivateKey:
    kind = family(body.kty)
    if kind == "RSA":
        size = body.key_size or 2048
        if size not in RSA_SIZES:
            raise BadRequest(f"key_size: {size} is not an RSA size; use 2048, 3072 or 4096", code="BadParameter")
        exponent = body.public_exponent or 65537
        if exponent not in RSA_EXPONENTS:
            raise BadRequest(f"public_exponent: {exponent} is not supported; use 65537", code="BadParameter")
        return rsa.generate_private_key(public_exponent=exponent, key_size=size)
    if kind == "EC":
        return ec.generate_private_key(curve_for(body.crv or "P-256"))
    size = body.key_size or 256
    if size not in OCT_SIZES:
        raise BadRequest(f"key_size: {size} is not an AES size; use 128, 192 or 256", code="BadParameter")
    return random_oct(size)


def _import_material(jwk: dict[str, Any]) -> tuple[str, PrivateKey]:
    kty = _check_kty(str(jwk.get("kty", "")))
    kind = family(kty)
    if kind == "RSA":
        return kty, rsa_private_from_jwk(jwk)
    if kind == "EC":
        return kty, ec_private_from_jwk(jwk)
    raw = b64url_decode(jwk.get("k", "")) if isinstance(jwk.get("k"), str) else b""
    if len(raw) * 8 not in OCT_SIZES:
        raise BadRequest("key.k: expected a 128, 192 or 256-bit AES key", code="BadParameter")
    return kty, raw
