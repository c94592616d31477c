"""The MAA stand-in's HTTP API and its token signer.

Paths and shapes are the real service's (api-version 2022-08-01):
- `POST /attest/SevSnpVm?api-version=...` body `{report, runtimeData:{data, dataType}, initTimeData, nonce}`
  → 200 `{"token": JWT}`. The JWT is RS256 with header `{alg, jku: <issuer>/certs, kid, typ}` and MAA's
  flat claims (`x-ms-sevsnpvm-*` with their real types, `x-ms-compliance-status`, `x-ms-runtime` = the
  parsed runtime JSON, `x-ms-ver`, `x-ms-policy-hash`), `iss` = the stand-in's URL, `iat`/`nbf`/`exp`, `jti`.
- `GET /certs` → JWKS `{keys:[{kty, kid, use, alg, n, e, x5c}]}`.
- `GET /.well-known/openid-configuration` → issuer, jwks_uri, claims_supported, ...
Errors are `{"error": {"code", "message"}}`: 400 `InvalidParameter` for a malformed body or missing
api-version, 413 `PayloadTooLarge` for a body over 256 KiB, 401 `AttestationFailed` when the evidence does
not verify (bad signature, unknown chain, measurement or runtime-data binding mismatch); the message names
the reason.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request

from ...attestation.evidence import MaaRequest
from ...attestation.verify import Trust, verify_maa_request
from ...common.bodies import json_value
from ...common.bodylimit import KIB
from ...common.errors import AttestationError, BadRequest, CcrError
from ...common.http import create_app

log = logging.getLogger(__name__)

MIN_API_VERSION = "2022-08-01"
API_VERSION_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
TOKEN_LIFETIME = dt.timedelta(hours=8)
# A real C-ACI attestation request is about 40 KB (report, VCEK chain, UVM endorsement, runtime keys).
MAX_BODY_BYTES = 256 * KIB
# MAA reports the hash of the attestation policy it applied; the stand-in applies the default policy.
DEFAULT_POLICY = "version= 1.0;authorizationrules{=> permit();};issuancerules{};"
POLICY_HASH = base64.urlsafe_b64encode(hashlib.sha256(DEFAULT_POLICY.encode()).digest()).rstrip(b"=").decode()


def _b64url_uint(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenSigner:
    """The RSA key MAA signs tokens with, and the self-signed certificate it publishes in `x5c`."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, name: str = "ccr MAA stand-in token signing") -> TokenSigner:
        key = rsa.generate_private_key(65537, 2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
        return cls(key=key, certificate=cert)

    @property
    def kid(self) -> str:
        """Like MAA's: base64 of the signing certificate's SHA-256 thumbprint."""
        return base64.b64encode(self.certificate.fingerprint(hashes.SHA256())).decode()

    def jwk(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e),
                "x5c": [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()]}

    def sign(self, claims: dict[str, Any], jku: str) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"jku": jku, "kid": self.kid, "typ": "JWT"})


def _check_api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if not version:
        raise BadRequest("api-version: query parameter required", code="InvalidParameter")
    if not API_VERSION_FORMAT.fullmatch(version):
        raise BadRequest(f"api-version {version!r} is not a version (YYYY-MM-DD[-preview])", code="InvalidParameter")
    if version[:10] < MIN_API_VERSION:
        raise BadRequest(f"api-version {version} does not support SevSnpVm (use {MIN_API_VERSION} or later)",
                         code="InvalidParameter")


def create_maa_app(trust: Trust, signer: TokenSigner, issuer: str | None = None) -> FastAPI:
    """The app. `issuer` (the stand-in's own URL) may be set later through `app.state.issuer`, once the
    listening port is known."""
    app = create_app("MAA stand-in", max_body_bytes=MAX_BODY_BYTES)
    app.state.issuer = issuer

    def current_issuer() -> str:
        if not app.state.issuer:
            raise CcrError("the stand-in does not know its URL yet", code="ServiceUnavailable", http_status=503)
        return app.state.issuer

    @app.post("/attest/SevSnpVm")
    async def attest_sev_snp_vm(request: Request) -> dict[str, str]:
        _check_api_version(request)
        body = json_value(await request.body(), code="InvalidParameter")
        try:
            parsed = MaaRequest.from_body(body)
            claims = verify_maa_request(parsed, trust)
        except AttestationError as exc:
            log.info("attestation refused: %s", exc.message)
            raise CcrError(exc.message, code="AttestationFailed", http_status=401) from None
        except BadRequest as exc:
            raise BadRequest(exc.message, code="InvalidParameter") from None
        issuer = current_issuer()
        now = int(time.time())
        claims.update({"iss": issuer, "iat": now, "nbf": now, "exp": now + int(TOKEN_LIFETIME.total_seconds()),
                       "jti": secrets.token_hex(32), "x-ms-policy-hash": POLICY_HASH})
        log.info("attested hostdata=%s compliance=%s", claims["x-ms-sevsnpvm-hostdata"],
                 claims.get("x-ms-compliance-status", "none"))
        return {"token": signer.sign(claims, jku=f"{issuer}/certs")}

    @app.get("/certs")
    async def certs() -> dict[str, Any]:
        return {"keys": [signer.jwk()]}

    @app.get("/.well-known/openid-configuration")
    async def openid_configuration() -> dict[str, Any]:
        issuer = current_issuer()
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/certs",
            "response_types_supported": ["token", "none"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "revocation_endpoint": f"{issuer}/revocations",
            "claims_supported": [
                "iss", "iat", "nbf", "exp", "jti", "x-ms-ver", "x-ms-attestation-type", "x-ms-policy-hash",
                "x-ms-compliance-status", "x-ms-runtime", "x-ms-inittime", "x-ms-sevsnpvm-authorkeydigest",
                "x-ms-sevsnpvm-bootloader-svn", "x-ms-sevsnpvm-familyId", "x-ms-sevsnpvm-guestsvn",
                "x-ms-sevsnpvm-hostdata", "x-ms-sevsnpvm-idkeydigest", "x-ms-sevsnpvm-imageId",
                "x-ms-sevsnpvm-is-debuggable", "x-ms-sevsnpvm-launchmeasurement", "x-ms-sevsnpvm-microcode-svn",
                "x-ms-sevsnpvm-migration-allowed", "x-ms-sevsnpvm-reportdata", "x-ms-sevsnpvm-reportid",
                "x-ms-sevsnpvm-smt-allowed", "x-ms-sevsnpvm-snpfw-svn", "x-ms-sevsnpvm-tee-svn",
                "x-ms-sevsnpvm-vmpl",
            ],
        }

    return app
