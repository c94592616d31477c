"""Small JOSE helpers shared by the stand-ins and sidecars: base64url, JWK conversion, RFC 7638
thumbprints, JWKS lookup by `kid`, and certificate chains carried in `x5c`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import BadRequest

_CURVES: dict[str, type[ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
CURVE_NAMES = {cls.name: name for name, cls in _CURVES.items()}
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (Azure services emit both)."""
    if not isinstance(text, str):
        raise BadRequest("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise BadRequest("not valid base64url") from None


def _uint(value: int) -> str:
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _int(jwk: dict[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"key.{name}: missing")
    return int.from_bytes(b64url_decode(value), "big")


def public_jwk(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {"kty": "EC", "crv": CURVE_NAMES[key.curve.name],
                "x": b64url_encode(numbers.x.to_bytes(size, "big")),
                "y": b64url_encode(numbers.y.to_bytes(size, "big"))}
    raise TypeError(f"unsupported public key {type(key).__name__}")


def private_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    jwk = public_jwk(key.public_key())
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        jwk.update(d=_uint(n.d), p=_uint(n.p), q=_uint(n.q), dp=_uint(n.dmp1), dq=_uint(n.dmq1), qi=_uint(n.iqmp))
    else:
        size = (key.curve.key_size + 7) // 8
        jwk["d"] = b64url_encode(key.private_numbers().private_value.to_bytes(size, "big"))
    return jwk


def rsa_public_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n")).public_key()


def rsa_private_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n"))
    p, q, d = _int(jwk, "p"), _int(jwk, "q"), _int(jwk, "d")
    try:
        numbers = rsa.RSAPrivateNumbers(
            p, q, d,
            _int(jwk, "dp") if jwk.get("dp") else rsa.rsa_crt_dmp1(d, p),
            _int(jwk, "dq") if jwk.get("dq") else rsa.rsa_crt_dmq1(d, q),
            _int(jwk, "qi") if jwk.get("qi") else rsa.rsa_crt_iqmp(p, q),
            public)
        return numbers.private_key()
    except ValueError as exc:
        raise BadRequest(f"key: not a valid RSA private key ({exc})") from None


def ec_private_from_jwk(jwk: dict[str, Any]) -> ec.EllipticCurvePrivateKey:
    curve = _CURVES.get(jwk.get("crv", ""))
    if curve is None:
        raise BadRequest(f"key.crv: unsupported curve {jwk.get('crv')!r}; use one of {', '.join(_CURVES)}")
    try:
        key = ec.derive_private_key(_int(jwk, "d"), curve())
    except ValueError as exc:
        raise BadRequest(f"key.d: not a valid EC private key ({exc})") from None
    derived = public_jwk(key.public_key())
    if any(jwk.get(c) and jwk[c] != derived[c] for c in ("x", "y")):
        raise BadRequest("key: x/y do not match d")
    return key


def curve_for(name: str) -> ec.EllipticCurve:
    curve = _CURVES.get(name)
    if curve is None:
        raise BadRequest(f"crv: unsupported curve {name!r}; use one of {', '.join(_CURVES)}")
    return curve()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members in lexicographic order."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "oct": ("k", "kty")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


def x5c_chain(certs: list[x509.Certificate]) -> list[str]:
    """`x5c` entries: standard base64 (not base64url) DER, leaf first (RFC 7515 §4.1.6)."""
    return [base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii") for cert in certs]


def certs_from_x5c(x5c: Any) -> list[x509.Certificate]:
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise BadRequest("x5c: expected a non-empty list of base64 certificates")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in x5c]
    except ValueError:
        raise BadRequest("x5c: not DER certificates") from None


def jwks_public_key(jwks: dict[str, Any], kid: str | None):
    """The public key of the JWKS entry with `kid` (from x5c[0] if present, else n/e or crv/x/y); None if absent."""
    for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(entry, dict) or (kid is not None and entry.get("kid") != kid):
            continue
        if entry.get("x5c"):
            return certs_from_x5c(entry["x5c"])[0].public_key()
        if entry.get("kty") == "RSA":
            return rsa_public_from_jwk(entry)
        if entry.get("kty") == "EC":
            curve = curve_for(entry.get("crv", ""))
            return ec.EllipticCurvePublicNumbers(_int(entry, "x"), _int(entry, "y"), curve).public_key()
    return None


_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


class InvalidJws(BadRequest):
    code = "InvalidJws"


@dataclass(frozen=True)
class CompactJws:
    """A compact JWS split and decoded once, with C-speed base64 (PyJWT walks large tokens, such as MAA
    tokens carrying runtime data, character by character in Python, several times per decode)."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    @classmethod
    def parse(cls, token: str) -> CompactJws:
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or not all(_B64URL.match(p) for p in parts):
            raise InvalidJws("not a compact JWS (three base64url parts)")
        try:
            header_bytes, payload, signature = (b64url_decode(part) for part in parts)
        except BadRequest:  # base64url of an impossible length: a malformed token, like any other
            raise InvalidJws("not a compact JWS (three base64url parts)") from None
        try:
            header = json.loads(header_bytes)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            raise InvalidJws("JWS header is not JSON") from None
        if not isinstance(header, dict):
            raise InvalidJws("JWS header is not a JSON object")
        return cls(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)

    def claims(self) -> dict[str, Any]:
        try:
            claims = json.loads(self.payload)
        except (ValueError, RecursionError):
            raise InvalidJws("JWS payload is not JSON") from None
        if not isinstance(claims, dict):
            raise InvalidJws("JWS payload is not a JSON object")
        return claims

    def verify(self, key, algorithms: tuple[str, ...] | list[str]) -> bool:
        """True when the signature holds for `key` under the header's `alg`, which must be allowed."""
        alg = self.header.get("alg")
        if alg not in algorithms or not isinstance(alg, str) or alg[2:] not in _HASHES:
            return False
        digest = _HASHES[alg[2:]]()
        try:
            if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
                key.verify(self.signature, self.signing_input, padding.PKCS1v15(), digest)
            elif alg.startswith("PS") and isinstance(key, rsa.RSAPublicKey):
                key.verify(self.signature, self.signing_input,
                           padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size), digest)
            elif alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
                size = (key.curve.key_size + 7) // 8
                if len(self.signature) != 2 * size:
                    return False
                r = int.from_bytes(self.signature[:size], "big")
                s = int.from_bytes(self.signature[size:], "big")
                key.verify(encode_dss_signature(r, s), self.signing_input, ec.ECDSA(digest))
            else:
                return False
        except InvalidSignature:
            return False
        return True


def check_lifetime(claims: dict[str, Any], *, leeway: float, now: float | None = None) -> str | None:
    """None when `exp` (required) and `nbf` (optional) admit `now`; else what is wrong."""
    now = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return "has no expiry (exp)"
    if now > exp + leeway:
        return "has expired"
    if nbf is not None and (not isinstance(nbf, int | float) or now + leeway < nbf):
        return "is not valid yet (nbf)"
    return None
