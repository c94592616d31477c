"""A client for Azure Attestation's `attest/SevSnpVm` (the real service or the stand-in).

`attest_sev_snp(maa_endpoint, evidence, runtime_data)` posts the body Microsoft's SKR sidecar posts and
returns the token. The caller made `evidence` with REPORT_DATA[0:32] = sha256(runtime_data) (see
`report_data_for`), which is the binding MAA checks. `maa_endpoint` may be a bare host name as Azure
documents it (`myattest.eus.attest.azure.net`) or a URL.
"""

from __future__ import annotations

import hashlib
import ssl
from typing import Any

import httpx
import jwt

from ..common.errors import RemoteServiceError
from .evidence import Evidence, MaaRequest

API_VERSION = "2022-08-01"
ATTEST_PATH = "/attest/SevSnpVm"


TlsVerify = str | bool | ssl.SSLContext


def tls_verify(verify: TlsVerify) -> bool | ssl.SSLContext:
    """httpx's `verify` from a CA bundle path (how endpoints.json names the stand-ins' CA) or a bool."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def report_data_for(runtime_data: bytes) -> bytes:
    """The 64-byte REPORT_DATA that binds a report to `runtime_data`: sha256 ‖ 32 zero bytes."""
    return hashlib.sha256(runtime_data).digest() + bytes(32)


def maa_url(maa_endpoint: str) -> str:
    endpoint = maa_endpoint.rstrip("/")
    if "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    return f"{endpoint}{ATTEST_PATH}?api-version={API_VERSION}"


def build_request_body(evidence: Evidence, runtime_data: bytes, *, runtime_data_type: str = "JSON",
                       nonce: int | None = None) -> dict[str, Any]:
    return MaaRequest(evidence=evidence, runtime_data=runtime_data, runtime_data_type=runtime_data_type,
                      nonce=nonce).to_body()


def _token_from(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise RemoteServiceError("MAA", f"attestation refused ({response.status_code}): "
                                 f"{message or response.text[:200]}", status=response.status_code)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise RemoteServiceError("MAA", "response has no token", status=response.status_code)
    return token


def attest_sev_snp(maa_endpoint: str, evidence: Evidence, runtime_data: bytes, *,
                   verify: TlsVerify = True, timeout: float = 30.0, client: httpx.Client | None = None,
                   nonce: int | None = None) -> str:
    """POST the evidence to MAA and return its JWT. `verify`: a CA bundle path (the stand-in's) or True.
    Raises RemoteServiceError (with `.status`) when MAA refuses or cannot be reached."""
    body = build_request_body(evidence, runtime_data, nonce=nonce)
    try:
        if client is not None:
            response = client.post(maa_url(maa_endpoint), json=body, timeout=timeout)
        else:
            with httpx.Client(verify=tls_verify(verify), timeout=timeout) as own:
                response = own.post(maa_url(maa_endpoint), json=body)
    except httpx.HTTPError as exc:
        raise RemoteServiceError("MAA", f"cannot reach {maa_endpoint}: {exc}") from None
    return _token_from(response)


async def attest_sev_snp_async(maa_endpoint: str, evidence: Evidence, runtime_data: bytes, *,
                               verify: TlsVerify = True, timeout: float = 30.0,
                               client: httpx.AsyncClient | None = None, nonce: int | None = None) -> str:
    """`attest_sev_snp` for asyncio code (the skr sidecar's handlers)."""
    body = build_request_body(evidence, runtime_data, nonce=nonce)
    try:
        if client is not None:
            response = await client.post(maa_url(maa_endpoint), json=body, timeout=timeout)
        else:
            async with httpx.AsyncClient(verify=tls_verify(verify), timeout=timeout) as own:
                response = await own.post(maa_url(maa_endpoint), json=body)
    except httpx.HTTPError as exc:
        raise RemoteServiceError("MAA", f"cannot reach {maa_endpoint}: {exc}") from None
    return _token_from(response)


def verify_token(token: str, maa_endpoint: str, *, verify: TlsVerify = True, timeout: float = 30.0) -> dict[str, Any]:
    """Check an MAA token as a relying party does: `iss` is `maa_endpoint`, the key comes from the JWKS
    that MAA's OpenID metadata names (never from the token itself), RS256 signature, `exp`/`nbf`.
    Returns the claims; raises RemoteServiceError when MAA cannot be reached and jwt.InvalidTokenError
    when the token is not valid."""

    issuer = maa_endpoint.rstrip("/")
    if "://" not in issuer:
        issuer = f"https://{issuer}"
    try:
        with httpx.Client(verify=tls_verify(verify), timeout=timeout) as client:
            metadata = client.get(f"{issuer}/.well-known/openid-configuration").raise_for_status().json()
            jwks = client.get(metadata["jwks_uri"]).raise_for_status().json()
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise RemoteServiceError("MAA", f"cannot fetch the signing keys of {issuer}: {exc}") from None
    kid = jwt.get_unverified_header(token).get("kid")
    keys = [key for key in jwks.get("keys", []) if key.get("kid") == kid]
    if not keys:
        raise jwt.InvalidTokenError(f"no signing key with kid {kid!r} at {issuer}")
    key = jwt.PyJWK(keys[0], algorithm="RS256")
    return jwt.decode(token, key, algorithms=["RS256"], issuer=issuer, options={"verify_aud": False})
