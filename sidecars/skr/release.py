"""The room's side of secure key release: check Key Vault's signed answer and unwrap the key.

Key Vault answers `{"value": JWS}`. The JWS header's `x5c` chain must verify to the roots the room trusts
for that vault, for the vault's host name, and sign the payload; the payload's `key_hsm` holds the key
wrapped (RSA-OAEP ‖ AES-KWP) to the room's ephemeral RSA key, which only this process holds.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ..common.errors import AttestationError, BadRequest
from ..common.jose import CompactJws, InvalidJws, b64url_decode, b64url_encode, certs_from_x5c, private_jwk
from ..common.keywrap import KeyWrapAlgorithm, rsa_aes_unwrap

JWS_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")


class ReleaseVerificationError(AttestationError):
    code = "ReleaseResponseInvalid"


@dataclass(frozen=True)
class ReleasedKey:
    kty: str  # as Key Vault names it: oct-HSM, RSA-HSM, EC, ...
    material: bytes  # raw (oct) or PKCS#8 DER (RSA, EC)
    kid: str
    key_ops: tuple[str, ...]

    def jwk(self) -> dict[str, Any]:
        """The key as a JWK: `k` for symmetric keys, the private JWK for RSA and EC."""
        if self.kty.startswith("oct"):
            return {"kty": "oct", "k": b64url_encode(self.material)}
        key = serialization.load_der_private_key(self.material, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ReleaseVerificationError(f"released key of type {self.kty} is not RSA or EC")
        return private_jwk(key)


def load_roots(ca_file: str | Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(ca_file).read_bytes())


def _subject(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


class VerifiedChains:
    """Chains already verified for a host, remembered for a few minutes: Key Vault signs every release
    with the same chain, and path validation costs more than the rest of the check."""

    def __init__(self, ttl: float = 600.0):
        self._ttl = ttl
        self._seen: dict[tuple[str, bytes], float] = {}

    def known(self, host: str, chain: list[x509.Certificate]) -> bool:
        seen = self._seen.get((host, _chain_digest(chain)))
        return seen is not None and time.monotonic() - seen < self._ttl

    def remember(self, host: str, chain: list[x509.Certificate]) -> None:
        self._seen[(host, _chain_digest(chain))] = time.monotonic()


def _chain_digest(chain: list[x509.Certificate]) -> bytes:
    digest = hashlib.sha256()
    for cert in chain:
        digest.update(cert.public_bytes(serialization.Encoding.DER))
    return digest.digest()


def verify_release_jws(value: str, vault_host: str, roots: list[x509.Certificate],
                       verified: VerifiedChains | None = None) -> dict[str, Any]:
    """The payload of Key Vault's release JWS, once its x5c chain and signature check out."""
    try:
        jws = CompactJws.parse(value)
    except InvalidJws:
        raise ReleaseVerificationError("Key Vault's release answer is not a JWS") from None
    try:
        chain = certs_from_x5c(jws.header.get("x5c"))
    except BadRequest as exc:
        raise ReleaseVerificationError(f"Key Vault's release JWS: {exc}") from None
    if verified is None or not verified.known(vault_host, chain):
        try:
            verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(_subject(vault_host))
            verifier.verify(chain[0], chain[1:])
        except VerificationError as exc:
            raise ReleaseVerificationError(f"the release JWS is not signed for {vault_host}: {exc}") from None
        if verified is not None:
            verified.remember(vault_host, chain)
    if not jws.verify(chain[0].public_key(), JWS_ALGORITHMS):
        raise ReleaseVerificationError(f"the release JWS signature does not verify ({jws.header.get('alg')})")
    try:
        return jws.claims()
    except InvalidJws as exc:
        raise ReleaseVerificationError(f"the release JWS payload: {exc}") from None


def unwrap_released_key(payload: dict[str, Any], wrapping_key: rsa.RSAPrivateKey) -> ReleasedKey:
    try:
        key = payload["response"]["key"]["key"]
        enc = KeyWrapAlgorithm(payload["request"]["enc"])
        key_hsm = json.loads(b64url_decode(key["key_hsm"]))
        ciphertext = b64url_decode(key_hsm["ciphertext"])
    except (KeyError, TypeError, ValueError, BadRequest) as exc:
        raise ReleaseVerificationError(f"the release payload lacks a wrapped key ({exc})") from None
    material = rsa_aes_unwrap(wrapping_key, ciphertext, enc)
    return ReleasedKey(str(key.get("kty", "")), material, str(key.get("kid", "")), tuple(key.get("key_ops") or ()))
