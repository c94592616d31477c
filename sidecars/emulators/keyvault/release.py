"""Secure key release under `/keys/{name}[/{version}]/release`: an exportable key goes, wrapped to the key in
the caller's attestation token, to a caller whose token satisfies the key's release policy. The answer is
signed as Key Vault signs it."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request
from pydantic import Field

from ...common.bodies import json_body_openapi
from ...common.errors import BadRequest, CcrError, Forbidden
from ...common.jose import b64url_encode, rsa_public_from_jwk
from ...common.keywrap import KeyWrapAlgorithm, rsa_aes_wrap
from .attestation import verify_attestation_token
from .deps import BodyIn, KeyVault, KeyVaultState, kv_body, vault_url

log = logging.getLogger("ccr.emulators.keyvault")
router = APIRouter()


class KeyReleaseIn(BodyIn):
    target: str = Field(min_length=1)
    nonce: str | None = None
    enc: KeyWrapAlgorithm | None = None


@router.post("/keys/{name}/release", openapi_extra=json_body_openapi(KeyReleaseIn))
@router.post("/keys/{name}//release", openapi_extra=json_body_openapi(KeyReleaseIn))
async def release_current(name: str, body: Annotated[KeyReleaseIn, kv_body(KeyReleaseIn)], request: Request,
                          kv: KeyVault) -> dict[str, Any]:
    return await _release(kv, request, name, None, body)


@router.post("/keys/{name}/{version}/release", openapi_extra=json_body_openapi(KeyReleaseIn))
async def release_version(name: str, version: str, body: Annotated[KeyReleaseIn, kv_body(KeyReleaseIn)],
                          request: Request, kv: KeyVault) -> dict[str, Any]:
    return await _release(kv, request, name, version, body)


async def _release(kv: KeyVaultState, request: Request, name: str, version: str | None,
                   body: KeyReleaseIn) -> dict[str, Any]:
    key = kv.vault.key(name, version)
    url = vault_url(request)
    if not key.attributes.exportable or key.release_policy is None:
        raise Forbidden(f"key {name} is not exportable: it has no release policy or exportable=false")
    if not key.attributes.enabled:
        raise Forbidden(f"key {name} is disabled")
    try:
        claims = await verify_attestation_token(body.target, key.release_policy.parsed, kv.jwks)
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
    return {"value": kv.signer.sign(payload)}


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
