"""Member identities, and the legacy signed member requests.

A consortium member is a key pair and a self-signed certificate, as in CCF; its id is the SHA-256 of the
certificate (DER), hex. On the real wire a member authenticates as CCF members do: governance writes are
COSE_Sign1 messages (`cose`) and application requests present the certificate in mutual TLS
(`MemberIdentity.tls_context`).

The legacy `Authorization: CCR-Member id=..., ts=..., sig=...` header, where `sig` is ECDSA-P384-SHA384 over
`METHOD\\nPATH?QUERY\\nTS\\nsha256(body)`, is kept only as an explicit fallback (`--member-auth header`
against a stand-in started with `--allow-signed-header`): no real CGS accepts it. The service accepts its
timestamp only inside its replay window and each signature only once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .cose import member_id_of
from .errors import ConfigError, Unauthorized

SCHEME = "CCR-Member"
_HEADER = re.compile(r"^CCR-Member id=([0-9a-f]{64}), ts=(\d{1,13}), sig=([A-Za-z0-9+/=]+)$")


__all__ = ["MemberIdentity", "SignedMemberRequest", "member_id_of", "parse_authorization",
           "verify_member_signature"]


def canonical_request(method: str, target: str, timestamp: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), target, timestamp, hashlib.sha256(body).hexdigest()]).encode()


@dataclass(frozen=True)
class MemberIdentity:
    """A member's signing key and certificate (files `member.key`, `member.pem` in `directory`)."""

    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    directory: Path | None = None

    @property
    def member_id(self) -> str:
        return member_id_of(self.cert)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def create(cls, directory: str | Path, name: str) -> MemberIdentity:
        out = Path(directory)
        if (out / "member.key").exists():
            raise ConfigError(f"{out} already holds a member identity; choose another directory")
        out.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP384R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
                .sign(key, hashes.SHA384()))
        key_file = out / "member.key"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        (out / "member.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(name, key, cert, out)

    @classmethod
    def load(cls, directory: str | Path) -> MemberIdentity:
        src = Path(directory)
        try:
            key = serialization.load_pem_private_key((src / "member.key").read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate((src / "member.pem").read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{src}: no member identity (member.key, member.pem); "
                              "create one with `ccr governance member create`") from None
        except ValueError as exc:
            raise ConfigError(f"{src}: unreadable member identity: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{src}/member.key: expected an EC key")
        name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return cls(str(name), key, cert, src)

    def tls_context(self, ca_bundle: str | None = None) -> ssl.SSLContext:
        """A client TLS context that verifies the service (with `ca_bundle`, or the system's trust store) and
        presents this member's certificate when the service asks for one (CCF's `member_cert`)."""
        if self.directory is None:
            raise ConfigError(f"member {self.name}: its certificate is not in a directory, so it cannot be "
                              "presented in TLS; load the identity with MemberIdentity.load")
        context = ssl.create_default_context(cafile=ca_bundle)
        try:
            context.load_cert_chain(self.directory / "member.pem", self.directory / "member.key")
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{self.directory}: cannot use member.pem/member.key in TLS: {exc}") from None
        return context

    def authorization(self, method: str, target: str, body: bytes, *, now_ms: int | None = None) -> str:
        timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
        sig = self.key.sign(canonical_request(method, target, timestamp, body), ec.ECDSA(hashes.SHA384()))
        return f"{SCHEME} id={self.member_id}, ts={timestamp}, sig={base64.b64encode(sig).decode()}"


@dataclass(frozen=True)
class SignedMemberRequest:
    member_id: str
    timestamp_ms: int
    signature: bytes


def parse_authorization(header: str | None) -> SignedMemberRequest:
    if not header:
        raise Unauthorized("member request is not signed: missing Authorization header")
    match = _HEADER.match(header.strip())
    if not match:
        raise Unauthorized("Authorization header is not a CCR-Member signature")
    try:
        signature = base64.b64decode(match.group(3), validate=True)
    except binascii.Error:
        raise Unauthorized("Authorization header: sig is not base64") from None
    return SignedMemberRequest(match.group(1), int(match.group(2)), signature)


def verify_member_signature(cert: x509.Certificate, request: SignedMemberRequest, method: str, target: str,
                            body: bytes) -> None:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Unauthorized("member certificate does not hold an EC key")
    try:
        key.verify(request.signature, canonical_request(method, target, str(request.timestamp_ms), body),
                   ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise Unauthorized("member signature does not verify") from None
