"""A running Key Vault stand-in (HTTPS, dev tokens trusted) and a test attestation authority: an HTTPS
server publishing `/certs` and OpenID metadata whose key signs MAA-shaped tokens the tests shape at will
(right or wrong claims, expired, tampered, pointing `jku` elsewhere)."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from sidecars.common.devtokens import DevTokenIssuer
from sidecars.common.http import TlsFiles, serve
from sidecars.common.jose import public_jwk, thumbprint
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA

HOST_DATA = "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20"


@dataclass
class TestAuthority:
    """Signs attestation tokens like MAA: RS256, `jku` -> {url}/certs, `iss` = url."""

    tls: TlsFiles
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    url: str = ""

    @property
    def kid(self) -> str:
        return thumbprint(public_jwk(self.key.public_key()))

    def jwks(self) -> dict:
        jwk = public_jwk(self.key.public_key())
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return {"keys": [jwk]}

    def start(self) -> TestAuthority:
        app = FastAPI()
        app.get("/certs")(lambda: self.jwks())
        app.get("/{tenant}/discovery/v2.0/keys")(lambda tenant: self.jwks())  # as Entra publishes them
        app.get("/.well-known/openid-configuration")(
            lambda: {"issuer": self.url, "jwks_uri": f"{self.url}/certs"})
        ready = threading.Event()

        def on_ready(port: int) -> None:
            self.url = f"https://127.0.0.1:{port}"
            ready.set()

        threading.Thread(target=serve, args=(app, "127.0.0.1", 0), kwargs={"tls": self.tls, "on_ready": on_ready},
                         daemon=True).start()
        assert ready.wait(10), "test authority did not start"
        return self

    def claims(self, runtime_key: dict, **overrides) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.url, "iat": now, "nbf": now, "exp": now + 600,
            "x-ms-attestation-type": "sevsnpvm", "x-ms-compliance-status": "azure-compliant-uvm",
            "x-ms-sevsnpvm-hostdata": HOST_DATA, "x-ms-sevsnpvm-is-debuggable": False,
            "x-ms-sevsnpvm-guestsvn": 2, "x-ms-runtime": {"keys": [runtime_key]}, "x-ms-ver": "1.0",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, runtime_key: dict, *, key: rsa.RSAPrivateKey | None = None, jku: str | None = None,
              **overrides) -> str:
        headers = {"kid": self.kid, "jku": jku or f"{self.url}/certs", "typ": "JWT"}
        return jwt.encode(self.claims(runtime_key, **overrides), key or self.key, algorithm="RS256", headers=headers)


@dataclass
class KeyVaultUnderTest:
    url: str
    ca_file: str
    tokens: DevTokenIssuer
    process: ManagedProcess

    def log(self) -> str:
        return self.process.output()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def authority(pki) -> TestAuthority:
    return TestAuthority(pki.issue_server_cert("authority")).start()


def start_keyvault(pki, run: Path, *trust: str) -> KeyVaultUnderTest:
    tls = pki.issue_server_cert("keyvault", directory=run)
    tokens = DevTokenIssuer.create(run / "tokens")
    ready = run / "ready.json"
    proc = ManagedProcess(
        "keyvault",
        [sys.executable, "-m", "sidecars.emulators.keyvault", "--port", "0", "--cert", tls.cert_file,
         "--key", tls.key_file, "--ready-file", ready, "--ca-file", pki.cert_file,
         "--trust-dev-tokens", tokens.jwks_file, *trust],
        ready=file_exists(ready), ready_timeout=30, log_path=run / "keyvault.log",
        cwd=Path(__file__).resolve().parents[3],
    ).start()
    return KeyVaultUnderTest(json.loads(ready.read_text())["url"], str(pki.cert_file), tokens, proc)


@pytest.fixture(scope="session")
def keyvault(pki, tmp_path_factory) -> KeyVaultUnderTest:
    vault = start_keyvault(pki, tmp_path_factory.mktemp("keyvault"))
    yield vault
    vault.process.stop()
