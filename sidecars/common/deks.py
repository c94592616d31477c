"""Data keys of volumes: one DEK per datasource/datasink, wrapped with the owner's KEK, kept as a Key
Vault secret.

The KEK never leaves the owner's vault except through secure key release to an attested room (skr
returns it as a JWK). The wrapped DEK is a Key Vault secret whose value is JSON:

    {"format": "ccr-wrapped-dek/v1", "alg": "RSA-OAEP-256" | "A256KWP", "kek": "<kid or name>",
     "wrapped": "<base64 of the wrapped 32 key bytes>", "segment_size": 65536,
     "fingerprint": "<DataKey.fingerprint>", "mode": "CSE" | "CPK"}

RSA KEKs wrap with RSA-OAEP-256 (OAEP, SHA-256, MGF1-SHA-256: Key Vault's `RSA-OAEP-256`); oct KEKs with
AES key wrap with padding (RFC 5649, Key Vault's `A256KWP` family). The fingerprint lets the owner's
publish command refuse to mix two DEKs in one container without revealing anything about the key.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding, aes_key_wrap_with_padding
from jwt.algorithms import RSAAlgorithm

from ..spec import EncryptionMode
from .errors import CcrError, ConfigError
from .objectformat import DataKey

WRAPPED_FORMAT = "ccr-wrapped-dek/v1"
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class KeyUnwrapError(CcrError):
    """The wrapped DEK could not be unwrapped with the released KEK (wrong KEK, or a tampered secret)."""

    code = "KeyUnwrapFailed"
    http_status = 403


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@dataclass(frozen=True)
class Kek:
    """A key-encryption key: an RSA public or private key, or AES key bytes (oct). `kid` names it."""

    kid: str
    rsa_public: rsa.RSAPublicKey | None = None
    rsa_private: rsa.RSAPrivateKey | None = None
    oct: bytes | None = None

    @property
    def algorithm(self) -> str:
        return "A256KWP" if self.oct is not None else "RSA-OAEP-256"

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any] | str, *, kid: str | None = None) -> Kek:
        """A JWK as Key Vault and skr produce it (RSA / RSA-HSM, oct / oct-HSM)."""
        data = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
        kty = str(data.get("kty", "")).removesuffix("-HSM")
        name = kid or str(data.get("kid") or "kek")
        if kty == "oct":
            if "k" not in data:
                raise ConfigError(f"KEK {name}: oct JWK without 'k'")
            material = _b64url_decode(data["k"])
            if len(material) not in (16, 24, 32):
                raise ConfigError(f"KEK {name}: AES key of {len(material)} bytes")
            return cls(name, oct=material)
        if kty == "RSA":
            data["kty"] = "RSA"
            try:
                key = RSAAlgorithm.from_jwk(data)
            except Exception as exc:  # PyJWT raises several types for malformed JWKs
                raise ConfigError(f"KEK {name}: not a usable RSA JWK ({exc})") from None
            if isinstance(key, rsa.RSAPrivateKey):
                return cls(name, rsa_public=key.public_key(), rsa_private=key)
            return cls(name, rsa_public=key)
        raise ConfigError(f"KEK {name}: key type {data.get('kty')!r} cannot wrap keys (use RSA or oct)")

    @classmethod
    def from_file(cls, path: Path) -> Kek:
        """A JWK (JSON) or PEM file; the file's stem names the key."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"KEK file {path}: {exc.strerror}") from None
        if raw.lstrip().startswith(b"{"):
            return cls.from_jwk(raw.decode(), kid=path.stem)
        return cls.from_pem(raw, kid=path.stem)

    @classmethod
    def from_pem(cls, pem: bytes, *, kid: str) -> Kek:
        if b"PRIVATE KEY" in pem:
            try:
                private = serialization.load_pem_private_key(pem, password=None)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"KEK {kid}: not a PEM RSA key ({exc})") from None
            if not isinstance(private, rsa.RSAPrivateKey):
                raise ConfigError(f"KEK {kid}: only RSA PEM keys are supported")
            return cls(kid, rsa_public=private.public_key(), rsa_private=private)
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise ConfigError(f"KEK {kid}: not a PEM RSA key ({exc})") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigError(f"KEK {kid}: only RSA PEM keys are supported")
        return cls(kid, rsa_public=key)


@dataclass(frozen=True)
class WrappedDek:
    """The stored form of a DEK (the Key Vault secret's value)."""

    alg: str
    kek: str
    wrapped: bytes
    segment_size: int
    fingerprint: str
    mode: EncryptionMode = EncryptionMode.CSE

    def to_json(self) -> str:
        return json.dumps({"format": WRAPPED_FORMAT, "alg": self.alg, "kek": self.kek,
                           "wrapped": base64.b64encode(self.wrapped).decode(),
                           "segment_size": self.segment_size, "fingerprint": self.fingerprint,
                           "mode": self.mode.value}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "secret") -> WrappedDek:
        try:
            data = json.loads(text)
            if data.get("format") != WRAPPED_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {WRAPPED_FORMAT}")
            return cls(alg=str(data["alg"]), kek=str(data["kek"]), wrapped=base64.b64decode(data["wrapped"]),
                       segment_size=int(data["segment_size"]), fingerprint=str(data["fingerprint"]),
                       mode=EncryptionMode(data.get("mode", EncryptionMode.CSE)))  # a bad one: ValueError below
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{source}: not a wrapped DEK ({exc})") from None


def wrap_dek(dek: DataKey, kek: Kek, *, mode: EncryptionMode = EncryptionMode.CSE) -> WrappedDek:
    material = dek.export_material()
    if kek.oct is not None:
        wrapped = aes_key_wrap_with_padding(kek.oct, material)
    else:
        assert kek.rsa_public is not None
        wrapped = kek.rsa_public.encrypt(material, _OAEP)
    return WrappedDek(kek.algorithm, kek.kid, wrapped, dek.segment_size, dek.fingerprint, mode)


def unwrap_dek(wrapped: WrappedDek, kek: Kek) -> DataKey:
    """The DEK, or KeyUnwrapError naming why (never a partially right key)."""
    if wrapped.alg != kek.algorithm:
        raise KeyUnwrapError(f"the DEK is wrapped with {wrapped.alg} but the released KEK {kek.kid} is "
                             f"{'oct' if kek.oct is not None else 'RSA'}")
    try:
        if kek.oct is not None:
            material = aes_key_unwrap_with_padding(kek.oct, wrapped.wrapped)
        else:
            if kek.rsa_private is None:
                raise KeyUnwrapError(f"KEK {kek.kid} has no private part: cannot unwrap")
            material = kek.rsa_private.decrypt(wrapped.wrapped, _OAEP)
    except (InvalidUnwrap, ValueError):
        raise KeyUnwrapError(f"the DEK does not unwrap with KEK {kek.kid} (wrong key or altered secret)") from None
    dek = DataKey(material, segment_size=wrapped.segment_size)
    if dek.fingerprint != wrapped.fingerprint:
        raise KeyUnwrapError("the unwrapped DEK does not match the fingerprint stored beside it")
    return dek


# --- the owner's local copy of a DEK -------------------------------------------------------------------

def default_dek_file(account: str, container: str) -> Path:
    home = Path(os.environ.get("CCR_HOME") or Path.home() / ".ccr")
    return home / "deks" / f"{account}-{container}.json"


def save_dek_file(path: Path, dek: DataKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dek-")
    with os.fdopen(fd, "w") as out:
        json.dump({"format": "ccr-dek/v1", "key": base64.b64encode(dek.export_material()).decode(),
                   "segment_size": dek.segment_size, "fingerprint": dek.fingerprint}, out)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_dek_file(path: Path) -> DataKey:
    try:
        data = json.loads(path.read_text())
        dek = DataKey(base64.b64decode(data["key"]), segment_size=int(data["segment_size"]))
    except OSError as exc:
        raise ConfigError(f"cannot read DEK file {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a DEK file ({exc})") from None
    if dek.fingerprint != data.get("fingerprint"):
        raise ConfigError(f"{path}: key does not match its fingerprint (file damaged)")
    return dek
