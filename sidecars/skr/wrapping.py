"""Ephemeral RSA wrapping keys, one per release, generated ahead of time.

Key Vault wraps a released key to the RSA key the room names in its attestation (runtime data). As in
Microsoft's SKR sidecar every release gets a fresh key pair that never leaves this process; generating
a 2048-bit key costs 20-150 ms here, so a background thread keeps a few ready and a release only pays
for generation when the pool is empty. The caller refills the pool after its release is done, so the
generation (which holds the GIL) never competes with a release in flight.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from ..common.jose import public_jwk, thumbprint

KEY_BITS = 2048


@dataclass(frozen=True)
class WrappingKey:
    private_key: rsa.RSAPrivateKey
    jwk: dict  # public JWK with kid = RFC 7638 thumbprint

    @classmethod
    def generate(cls) -> WrappingKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        jwk = public_jwk(key.public_key())
        jwk["kid"] = thumbprint(jwk)
        jwk["key_ops"] = ["encrypt"]
        return cls(key, jwk)

    def runtime_data(self) -> bytes:
        """The JWKS the room presents as MAA runtime data (MAA puts it in the token as x-ms-runtime)."""
        return json.dumps({"keys": [self.jwk]}, separators=(",", ":")).encode()


class WrappingKeyPool:
    def __init__(self, size: int = 2):
        self._size = size
        self._keys: list[WrappingKey] = []
        self._lock = threading.Condition()
        self._filling = False
        self.refill()

    def refill(self) -> None:
        """Top the pool up in the background."""
        with self._lock:
            if self._filling or len(self._keys) >= self._size:
                return
            self._filling = True
        threading.Thread(target=self._fill, name="wrapping-keys", daemon=True).start()

    def _fill(self) -> None:
        while True:
            key = WrappingKey.generate()
            with self._lock:
                self._keys.append(key)
                self._lock.notify_all()
                if len(self._keys) >= self._size:
                    self._filling = False
                    return

    def take(self) -> WrappingKey:
        """A key no release has used; generated now if none is ready."""
        with self._lock:
            key = self._keys.pop() if self._keys else None
        return key or WrappingKey.generate()

    def wait_full(self, timeout: float = 10.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self._keys) >= self._size, timeout)
