"""A local certificate authority for the stand-ins' HTTPS listeners.

The stand-ins speak HTTPS like the real services (the Key Vault SDK refuses http://), so `ccr emulators
start` creates one CA per run directory, issues each listener a certificate for its loopback names, and
writes the CA bundle path into endpoints.json for clients (`connection_verify`, `REQUESTS_CA_BUNDLE`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .http import TlsFiles

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(names: tuple[str, ...] | list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def self_signed_ca(key: ec.EllipticCurvePrivateKey, common_name: str, *, days: int,
                   digest: hashes.HashAlgorithm) -> x509.Certificate:
    """A CA certificate for `key` that may sign leaf certificates only (path length 0), valid from five
    minutes ago (clock skew) for `days`."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, digest)
    )


@dataclass(frozen=True)
class LocalCA:
    """A CA whose certificate is `cert_file`; `issue_server_cert` signs listener certificates."""

    directory: Path

    @property
    def cert_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "ca.key"

    @classmethod
    def create(cls, directory: str | Path, name: str = "ccr local CA") -> LocalCA:
        """Create the CA in `directory`, or reuse the one already there."""
        ca = cls(Path(directory))
        if ca.cert_file.exists() and ca.key_file.exists():
            return ca
        ca.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self_signed_ca(key, name, days=365, digest=hashes.SHA256())
        _write_private(ca.key_file, _key_pem(key))
        ca.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def issue_server_cert(self, name: str, hostnames: tuple[str, ...] | list[str] = LOOPBACK_NAMES,
                          directory: str | Path | None = None) -> TlsFiles:
        """Issue `name.pem` (leaf + CA) and `name.key` for a TLS server answering on `hostnames`."""
        out = Path(directory) if directory else self.directory
        out.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = self._load()
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=30))
            .add_extension(_san(hostnames), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_file, key_file = out / f"{name}.pem", out / f"{name}.key"
        _write_private(key_file, _key_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                              + ca_cert.public_bytes(serialization.Encoding.PEM))
        return TlsFiles(str(cert_file), str(key_file))
