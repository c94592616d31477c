"""Development access tokens: an Entra-shaped token issuer for the local emulation, until (and besides)
the Entra stand-in.

`ccr emulators start` creates one signing key per run directory (`DevTokenIssuer.create(dir)`). Tokens
look like Entra v1 access tokens (`iss = https://sts.windows.net/<tenant>/`, `aud` = the resource,
`tid`, `oid`, `exp`, RS256) so the services that accept them (the Key Vault stand-in through
`--trust-issuer-jwks`, Azurite's `--oauth basic`) check them as they check real ones.
`DevTokenCredential` is an azure-core `TokenCredential`: pass it to any Azure SDK client
(`KeyClient(url, DevTokenCredential.from_dir(run_dir), ...)`). Never used against Azure.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from azure.core.credentials import AccessToken, AccessTokenInfo
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ConfigError
from .jose import public_jwk, thumbprint

DEV_TENANT_ID = "c0de0000-0000-4000-8000-000000000001"
TOKEN_LIFETIME_S = 3600


def dev_issuer(tenant_id: str = DEV_TENANT_ID) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


@dataclass(frozen=True)
class DevTokenIssuer:
    """The signing key (`dev-token.key`) and its JWKS (`dev-token-jwks.json`) in a directory."""

    directory: Path
    tenant_id: str = DEV_TENANT_ID

    @property
    def key_file(self) -> Path:
        return self.directory / "dev-token.key"

    @property
    def jwks_file(self) -> Path:
        return self.directory / "dev-token-jwks.json"

    @property
    def issuer(self) -> str:
        return dev_issuer(self.tenant_id)

    @classmethod
    def create(cls, directory: str | Path) -> DevTokenIssuer:
        issuer = cls(Path(directory))
        if issuer.key_file.exists() and issuer.jwks_file.exists():
            return issuer
        issuer.directory.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuer.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        issuer.key_file.chmod(0o600)
        jwk = public_jwk(key.public_key())
        jwk.update(kid=thumbprint(jwk), use="sig", alg="RS256")
        issuer.jwks_file.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
        return issuer

    def credential(self, subject: str = "ccr-dev-user") -> DevTokenCredential:
        return DevTokenCredential(self.key_file, tenant_id=self.tenant_id, subject=subject)


class DevTokenCredential:
    """An azure-core TokenCredential minting dev tokens for the requested scope's resource."""

    def __init__(self, key_file: str | Path, *, tenant_id: str = DEV_TENANT_ID, subject: str = "ccr-dev-user"):
        try:
            key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the dev token key {key_file}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"{key_file}: the dev token key must be an RSA key")
        self._key = key
        jwk = public_jwk(key.public_key())
        self._kid = thumbprint(jwk)
        self.tenant_id = tenant_id
        self.subject = subject

    @classmethod
    def from_dir(cls, directory: str | Path, subject: str = "ccr-dev-user") -> DevTokenCredential:
        return DevTokenIssuer(Path(directory)).credential(subject)

    def _mint(self, scopes: tuple[str, ...]) -> tuple[str, int]:
        if not scopes:
            raise ValueError("get_token needs at least one scope")
        resource = scopes[0].removesuffix("/.default")
        now = int(time.time())
        expires = now + TOKEN_LIFETIME_S
        claims = {
            "aud": resource, "iss": dev_issuer(self.tenant_id), "iat": now, "nbf": now - 5, "exp": expires,
            "tid": self.tenant_id, "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.subject)), "sub": self.subject,
            "appid": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.subject)), "ver": "1.0",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid, "typ": "JWT"})
        return token, expires

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs) -> AccessToken:
        token, expires = self._mint(scopes)
        return AccessToken(token, expires)

    def get_token_info(self, *scopes: str, options=None) -> AccessTokenInfo:
        token, expires = self._mint(scopes)
        return AccessTokenInfo(token, expires)

    def close(self) -> None:
        """Nothing to release; present so the credential works as a context manager like azure-identity's."""

    def __enter__(self) -> DevTokenCredential:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
