"""Where the inbound listener's certificate comes from.

`GovernanceCertificateSource`: the contract's CA (held by the governance service, reached through the
governance sidecar's `POST /ca/generateEndorsedCert`) endorses a key the room generates, so clients that
trust the contract CA know they talk to this attested room. CGS answers the certificate alone (`{cert}`):
the room never holds the CA's certificate, and needs none, as the reference's proxy serves the leaf
alone too; clients verify it against the contract CA the members publish (`ccr governance ca show`, CGS's
`ca/info`). `LocalCASource`: a CA the room generates itself (local runs, contracts without a CA). The proxy
only ever sees a `RoomCertificate`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..common.errors import RemoteServiceError
from ..common.governance_client import GovernanceClient
from ..common.http import TlsFiles
from ..common.tls import LocalCA


@dataclass(frozen=True)
class RoomCertificate:
    """The listener's chain and key, and the CA certificate clients must trust to verify it, when the room
    has it (None: the contract CA, which clients get from the members)."""

    tls: TlsFiles
    ca_file: str | None


class CertificateSource(Protocol):
    def issue(self, subject: str, names: Sequence[str], directory: Path) -> RoomCertificate:
        """A server certificate for `names` (DNS names or IP addresses), files written to `directory`.
        The private key is created in the room and never leaves it; only its public key is endorsed."""
        ...


class LocalCASource:
    """A CA the room generates (kept in `ca_dir`, reused across restarts)."""

    def __init__(self, ca_dir: str | Path, name: str = "ccr room CA"):
        self.ca = LocalCA.create(ca_dir, name)

    def issue(self, subject: str, names: Sequence[str], directory: Path) -> RoomCertificate:
        tls = self.ca.issue_server_cert(subject, list(names), directory)
        return RoomCertificate(tls, str(self.ca.cert_file))


class GovernanceCertificateSource:
    """The contract CA, through the governance sidecar's HTTP API (`{publicKey, subjectName,
    subjectAlternateNames, validityPeriodDays}` → `{cert}`)."""

    def __init__(self, governance_url: str, *, token: str | None = None, validity_days: int = 30):
        self.governance_url = governance_url
        self.token = token
        self.validity_days = validity_days

    def issue(self, subject: str, names: Sequence[str], directory: Path) -> RoomCertificate:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        # The proxy starts with the room: governance may not be listening yet (containers start in no order).
        with GovernanceClient(self.governance_url, token=self.token, start_wait_s=30.0) as governance:
            answer = governance.endorsed_cert(public_pem, subject_name=f"CN={subject}",
                                              subject_alternate_names=[_san(n) for n in names],
                                              validity_days=self.validity_days)
        try:
            cert = x509.load_pem_x509_certificate(answer["cert"].encode())
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RemoteServiceError("governance", f"generateEndorsedCert answered no usable certificate: {exc}") \
                from None
        # Whether the contract CA issued it is the clients' check (they hold the CA); the room checks that it
        # certifies the key only the room holds, so it can serve it at all.
        if cert.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode() != public_pem:
            raise RemoteServiceError("governance", "generateEndorsedCert endorsed another key than the room's")
        key_file, cert_file = directory / f"{subject}.key", directory / f"{subject}.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return RoomCertificate(TlsFiles(str(cert_file), str(key_file)), None)


def _san(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return f"dNSName:{name}"
    return f"iPAddress:{name}"
