"""The vault's contents: keys and secrets with their versions, held in memory for the stand-in's life."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ...common.errors import BadRequest, NotFound
from ...common.jose import b64url_encode, public_jwk
from ...common.release_policy import ReleasePolicy

NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
KEY_TYPES = ("RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM")
DEFAULT_KEY_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["sign", "verify"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
POLICY_CONTENT_TYPE = "application/json; charset=utf-8"
RECOVERY = {"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | bytes


def check_name(name: str, what: str = "key") -> str:
    if not NAME_RE.match(name):
        raise BadRequest(f"{what} name {name!r}: use 1-127 letters, digits and '-'", code="BadParameter")
    return name


def family(kty: str) -> str:
    return kty.removesuffix("-HSM")


@dataclass
class Attributes:
    enabled: bool = True
    exportable: bool = False
    nbf: int | None = None
    exp: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))

    def to_json(self, *, key: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.enabled, "created": self.created, "updated": self.updated, **RECOVERY}
        if key:
            out["exportable"] = self.exportable
        if self.nbf is not None:
            out["nbf"] = self.nbf
        if self.exp is not None:
            out["exp"] = self.exp
        return out


@dataclass
class StoredPolicy:
    """A release policy as stored: the owner's exact bytes (returned unchanged) and their parse."""

    data: bytes
    content_type: str
    immutable: bool
    parsed: ReleasePolicy

    def to_json(self) -> dict[str, Any]:
        return {"contentType": self.content_type, "data": b64url_encode(self.data), "immutable": self.immutable}


@dataclass
class KeyVersion:
    name: str
    version: str
    kty: str
    material: PrivateKey
    key_ops: list[str]
    attributes: Attributes
    tags: dict[str, str] | None
    release_policy: StoredPolicy | None

    def kid(self, vault_url: str) -> str:
        return f"{vault_url}/keys/{self.name}/{self.version}"

    def public_jwk(self, vault_url: str) -> dict[str, Any]:
        jwk: dict[str, Any] = {"kid": self.kid(vault_url), "kty": self.kty, "key_ops": list(self.key_ops)}
        if not isinstance(self.material, bytes):
            public = public_jwk(self.material.public_key())
            public.pop("kty")
            jwk.update(public)
        return jwk

    def bundle(self, vault_url: str) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.public_jwk(vault_url), "attributes": self.attributes.to_json(key=True)}
        if self.tags:
            out["tags"] = self.tags
        if self.release_policy is not None:
            out["release_policy"] = self.release_policy.to_json()
        return out

    def item(self, vault_url: str) -> dict[str, Any]:
        out: dict[str, Any] = {"kid": self.kid(vault_url), "attributes": self.attributes.to_json(key=True)}
        if self.tags:
            out["tags"] = self.tags
        return out

    def export_bytes(self) -> bytes:
        """The key material as Key Vault releases it: raw bytes (oct) or PKCS#8 DER (RSA, EC)."""
        if isinstance(self.material, bytes):
            return self.material
        return self.material.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())


@dataclass
class SecretVersion:
    name: str
    version: str
    value: str
    content_type: str | None
    attributes: Attributes
    tags: dict[str, str] | None

    def sid(self, vault_url: str) -> str:
        return f"{vault_url}/secrets/{self.name}/{self.version}"

    def bundle(self, vault_url: str, *, with_value: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.sid(vault_url), "attributes": self.attributes.to_json(key=False)}
        if with_value:
            out["value"] = self.value
        if self.content_type is not None:
            out["contentType"] = self.content_type
        if self.tags:
            out["tags"] = self.tags
        return out


def new_version() -> str:
    return uuid.uuid4().hex


class Vault:
    """Keys and secrets by name; each name holds its versions in creation order (last = current)."""

    def __init__(self) -> None:
        self._keys: dict[str, list[KeyVersion]] = {}
        self._secrets: dict[str, list[SecretVersion]] = {}
        self._lock = threading.Lock()

    def add_key(self, key: KeyVersion) -> KeyVersion:
        with self._lock:
            self._keys.setdefault(key.name, []).append(key)
        return key

    def key(self, name: str, version: str | None = None) -> KeyVersion:
        versions = self._keys.get(name)
        if not versions:
            raise NotFound(f"A key with (name/id) {name} was not found in this key vault. If you recently deleted "
                           "this key you may be able to recover it using the correct recovery command.",
                           code="KeyNotFound")
        if not version:
            return versions[-1]
        for key in versions:
            if key.version == version:
                return key
        raise NotFound(f"A key with (name/id) {name}/{version} was not found in this key vault.",
                       code="KeyNotFound")

    def key_versions(self, name: str) -> list[KeyVersion]:
        self.key(name)
        return list(self._keys[name])

    def current_keys(self) -> list[KeyVersion]:
        return [versions[-1] for versions in self._keys.values()]

    def add_secret(self, secret: SecretVersion) -> SecretVersion:
        with self._lock:
            self._secrets.setdefault(secret.name, []).append(secret)
        return secret

    def secret(self, name: str, version: str | None = None) -> SecretVersion:
        versions = self._secrets.get(name)
        if versions:
            if not version:
                return versions[-1]
            for secret in versions:
                if secret.version == version:
                    return secret
        shown = f"{name}/{version}" if version else name
        raise NotFound(f"A secret with (name/id) {shown} was not found in this key vault.", code="SecretNotFound")

    def secret_versions(self, name: str) -> list[SecretVersion]:
        self.secret(name)
        return list(self._secrets[name])

    def current_secrets(self) -> list[SecretVersion]:
        return [versions[-1] for versions in self._secrets.values()]


def random_oct(bits: int) -> bytes:
    return os.urandom(bits // 8)
