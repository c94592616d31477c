"""The Key Vault REST surface (api-version 7.4 and later) the official SDKs and the skr sidecar use."""

from __future__ import annotations

import json
import logging
import ssl
import time
from contextlib import asynccontextmanager
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ...common.errors import BadRequest, CcrError, Forbidden
from ...common.http import azure_error_body, create_app
from ...common.jose import (
    b64url_decode,
    b64url_encode,
    curve_for,
    ec_private_from_jwk,
    rsa_private_from_jwk,
    rsa_public_from_jwk,
)
from ...common.keywrap import KeyWrapAlgorithm, rsa_aes_wrap
from ...common.release_policy import ReleasePolicy
from .access import AccessTokenVerifier, EntraService, TrustedIssuer
from .attestation import verify_attestation_token
from .jwks import JwksCache
from .signer import ResponseSigner
from .store import (
    DEFAULT_KEY_OPS,
    KEY_TYPES,
    POLICY_CONTENT_TYPE,
    Attributes,
    KeyVersion,
    PrivateKey,
    SecretVersion,
    StoredPolicy,
    Vault,
    check_name,
    family,
    new_version,
    random_oct,
)

log = logging.getLogger("ccr.emulators.keyvault")
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class KeyAttributesIn(_In):
    enabled: bool | None = None
    exportable: bool | None = None
    nbf: int | None = None
    exp: int | None = None


class ReleasePolicyIn(_In):
    content_type: str | None = Field(None, alias="contentType")
    immutable: bool | None = None
    data: str


class KeyCreateIn(_In):
    kty: str
    key_size: int | None = None
    public_exponent: int | None = None
    key_ops: list[str] | None = None
    attributes: KeyAttributesIn | None = None
    tags: dict[str, str] | None = None
    crv: str | None = None
    release_policy: ReleasePolicyIn | None = None


class KeyImportIn(_In):
    key: dict[str, Any]
    hsm: bool | None = None
    attributes: KeyAttributesIn | None = None
    tags: dict[str, str] | None = None
    release_policy: ReleasePolicyIn | None = None


class KeyUpdateIn(_In):
    key_ops: list[str] | None = None
    attributes: KeyAttributesIn | None = None
    tags: dict[str, str] | None = None
    release_policy: ReleasePolicyIn | None = None


class KeyReleaseIn(_In):
    target: str = Field(min_length=1)
    nonce: str | None = None
    enc: KeyWrapAlgorithm | None = None


class SecretAttributesIn(_In):
    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None


class SecretSetIn(_In):
    value: str
    content_type: str | None = Field(None, alias="contentType")
    attributes: SecretAttributesIn | None = None
    tags: dict[str, str] | None = None


def _vault_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


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
        return rsa.generate_private_key(public_exponent=body.public_exponent or 65537, key_size=size)
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


def _wrapping_key(claims: dict[str, Any]) -> tuple[rsa.RSAPublicKey, str | None]:
    runtime = claims.get("x-ms-runtime")
    keys = runtime.get("keys") if isinstance(runtime, dict) else None
    for jwk in keys if isinstance(keys, list) else []:
        if isinstance(jwk, dict) and jwk.get("kty") == "RSA":
            try:
                return rsa_public_from_jwk(jwk), jwk.get("kid")
            except BadRequest:
                break
    raise Forbidden("target: the attestation token carries no RSA key in x-ms-runtime.keys to wrap the key to")


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

    app = create_app("Key Vault stand-in", error_body=azure_error_body, lifespan=lifespan)
    vault = Vault()
    app.state.vault = vault

    async def authenticate(request: Request) -> None:
        """Runs before the body is read, so the SDK's body-less first request gets the 401 challenge."""
        request.state.caller = await verifier.verify(request.headers.get("authorization"))
        if "api-version" not in request.query_params:
            raise BadRequest("The 'api-version' query parameter is missing.", code="BadParameter")

    app.router.dependencies.append(Depends(authenticate))

    def store_key(request: Request, name: str, kty: str, material: PrivateKey, key_ops: list[str] | None,
                  attributes: KeyAttributesIn | None, tags: dict[str, str] | None,
                  policy_in: ReleasePolicyIn | None) -> dict[str, Any]:
        policy = _policy(policy_in)
        key = KeyVersion(check_name(name), new_version(), kty, material,
                         key_ops or DEFAULT_KEY_OPS[family(kty)], _attributes(attributes, policy), tags, policy)
        vault.add_key(key)
        log.info("key %s version %s created (%s, exportable=%s, release policy=%s)", name, key.version, kty,
                 key.attributes.exportable, "yes" if policy else "no")
        return key.bundle(_vault_url(request))

    @app.post("/keys/{name}/create")
    async def create_key(name: str, body: KeyCreateIn, request: Request) -> dict[str, Any]:
        _check_kty(body.kty)
        return store_key(request, name, body.kty, _generate(body), body.key_ops, body.attributes, body.tags,
                         body.release_policy)

    @app.put("/keys/{name}")
    async def import_key(name: str, body: KeyImportIn, request: Request) -> dict[str, Any]:
        kty, material = _import_material(body.key)
        if body.hsm and not kty.endswith("-HSM"):
            kty += "-HSM"
        ops = body.key.get("key_ops") if isinstance(body.key.get("key_ops"), list) else None
        return store_key(request, name, kty, material, ops, body.attributes, body.tags, body.release_policy)

    @app.get("/keys")
    async def list_keys(request: Request) -> dict[str, Any]:
        url = _vault_url(request)
        items = []
        for key in vault.current_keys():
            item = key.item(url)
            item["kid"] = f"{url}/keys/{key.name}"
            items.append(item)
        return {"value": items, "nextLink": None}

    @app.get("/keys/{name}/versions")
    async def list_key_versions(name: str, request: Request) -> dict[str, Any]:
        url = _vault_url(request)
        return {"value": [k.item(url) for k in vault.key_versions(name)], "nextLink": None}

    @app.get("/keys/{name}")
    @app.get("/keys/{name}/")
    async def get_key(name: str, request: Request) -> dict[str, Any]:
        return vault.key(name).bundle(_vault_url(request))

    @app.get("/keys/{name}/{version}")
    async def get_key_version(name: str, version: str, request: Request) -> dict[str, Any]:
        return vault.key(name, version).bundle(_vault_url(request))

    @app.patch("/keys/{name}/")
    @app.patch("/keys/{name}/{version}")
    async def update_key(name: str, body: KeyUpdateIn, request: Request, version: str | None = None) -> dict[str, Any]:
        key = vault.key(name, version)
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
        return key.bundle(_vault_url(request))

    async def release(request: Request, name: str, version: str | None, body: KeyReleaseIn) -> dict[str, Any]:
        key = vault.key(name, version)
        url = _vault_url(request)
        if not key.attributes.exportable or key.release_policy is None:
            raise Forbidden(f"key {name} is not exportable: it has no release policy or exportable=false")
        if not key.attributes.enabled:
            raise Forbidden(f"key {name} is disabled")
        try:
            claims = await verify_attestation_token(body.target, key.release_policy.parsed, jwks)
        except CcrError as exc:
            log.warning("release of key %s/%s refused: %s", name, key.version, exc)
            raise
        wrapping_key, wrapping_kid = _wrapping_key(claims)
        enc = body.enc or KeyWrapAlgorithm.CKM_RSA_AES_KEY_WRAP
        ciphertext = rsa_aes_wrap(wrapping_key, key.export_bytes(), enc)
        key_hsm = {"schema_version": "1.0", "header": {"kid": wrapping_kid, "alg": "dir", "enc": str(enc)},
                   "ciphertext": b64url_encode(ciphertext)}
        jwk = key.public_jwk(url)
        jwk["key_hsm"] = b64url_encode(json.dumps(key_hsm, separators=(",", ":")).encode())
        request_part: dict[str, Any] = {"api-version": request.query_params["api-version"], "enc": str(enc),
                                        "kid": key.kid(url)}
        if body.nonce is not None:
            request_part["nonce"] = body.nonce
        payload = {"request": request_part, "response": {"key": {
            "attributes": key.attributes.to_json(key=True), "key": jwk,
            "release_policy": key.release_policy.to_json()}}}
        log.info("key %s/%s released to attested caller (issuer %s, enc %s)", name, key.version,
                 claims.get("iss"), enc)
        return {"value": signer.sign(payload)}

    @app.post("/keys/{name}/release")
    @app.post("/keys/{name}//release")
    async def release_current(name: str, body: KeyReleaseIn, request: Request) -> dict[str, Any]:
        return await release(request, name, None, body)

    @app.post("/keys/{name}/{version}/release")
    async def release_version(name: str, version: str, body: KeyReleaseIn, request: Request) -> dict[str, Any]:
        return await release(request, name, version, body)

    @app.put("/secrets/{name}")
    async def set_secret(name: str, body: SecretSetIn, request: Request) -> dict[str, Any]:
        attrs = body.attributes or SecretAttributesIn()
        secret = SecretVersion(check_name(name, "secret"), new_version(), body.value, body.content_type,
                               Attributes(enabled=attrs.enabled is not False, nbf=attrs.nbf, exp=attrs.exp),
                               body.tags)
        vault.add_secret(secret)
        log.info("secret %s version %s set", name, secret.version)
        return secret.bundle(_vault_url(request))

    @app.get("/secrets")
    async def list_secrets(request: Request) -> dict[str, Any]:
        url = _vault_url(request)
        items = []
        for secret in vault.current_secrets():
            item = secret.bundle(url, with_value=False)
            item["id"] = f"{url}/secrets/{secret.name}"
            items.append(item)
        return {"value": items, "nextLink": None}

    @app.get("/secrets/{name}/versions")
    async def list_secret_versions(name: str, request: Request) -> dict[str, Any]:
        url = _vault_url(request)
        return {"value": [s.bundle(url, with_value=False) for s in vault.secret_versions(name)], "nextLink": None}

    @app.get("/secrets/{name}")
    @app.get("/secrets/{name}/")
    async def get_secret(name: str, request: Request) -> dict[str, Any]:
        return vault.secret(name).bundle(_vault_url(request))

    @app.get("/secrets/{name}/{version}")
    async def get_secret_version(name: str, version: str, request: Request) -> dict[str, Any]:
        return vault.secret(name, version).bundle(_vault_url(request))

    return app
