"""The contract CA: created when a proposal to enable it is accepted; members read its certificate, and a room
with consent gets a certificate for its own key endorsed by it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import APIRouter

from ...common.errors import BadRequest, NotFound
from ...common.tls import self_signed_ca
from . import schemas
from .deps import Cgs, MemberAuth, SignedReleaseRoomAuth
from .store import Store

router = APIRouter()
# The contract CA itself lives 100 days; an endorsed certificate may not outlive that by much.
MAX_VALIDITY_DAYS = 365


@router.get("/app/contracts/{contract_id}/ca/info", response_model=None)
async def ca_info(contract_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    cgs.store.contract(contract_id)
    ca = cgs.store.state.ca.get(contract_id)
    return {"enabled": ca is not None, "caCert": (ca or {}).get("cert", "")}


@router.post("/app/contracts/{contract_id}/ca/generateEndorsedCert", response_model=None,
             openapi_extra=schemas.ROOM)
async def generate_endorsed_cert(contract_id: str, cgs: Cgs, room: SignedReleaseRoomAuth) -> dict[str, str]:
    ca = cgs.store.state.ca.get(contract_id, {})
    if not ca.get("key"):
        raise NotFound("Cannot generate endorsed certificate as there is no CA signing key for this "
                       "contract.", code="NoCASigningKey")
    data = room.data
    if not isinstance(data, dict) or not isinstance(data.get("publicKey"), str):
        raise BadRequest("data.publicKey: a PEM public key is required")
    if not isinstance(data.get("subjectName") or "", str):
        raise BadRequest("data.subjectName: expected a string")
    if not isinstance(data.get("subjectAlternateNames") or [], list):
        raise BadRequest("data.subjectAlternateNames: expected a list")
    days = data.get("validityPeriodDays") or 30
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_VALIDITY_DAYS:
        raise BadRequest(f"data.validityPeriodDays: expected a whole number of days from 1 to {MAX_VALIDITY_DAYS}")
    try:
        cert = _endorse(ca, data)
    except (ValueError, TypeError) as exc:
        # Whatever the room asked for that a certificate cannot hold: an empty or over-long name, an address or
        # DNS name that is not one, a key type that cannot be certified.
        raise BadRequest(f"data: cannot endorse this request: {exc}") from None
    cgs.audit.append(contract_id, "cgs", "release", {"action": "generate_endorsed_cert",
                                                     "subjectName": data.get("subjectName", ""),
                                                     "subjectAlternateNames": data.get("subjectAlternateNames", [])})
    # CGS answers the certificate alone (`{cert}`); who needs the CA's reads it from `ca/info` as a member.
    return room.wrapped(json.dumps({"cert": cert}).encode())


def ensure_ca(store: Store, contract_id: str) -> None:
    """Creates the contract's CA key and certificate unless it has them."""
    if store.state.ca.get(contract_id, {}).get("key"):
        return
    key = ec.generate_private_key(ec.SECP384R1())
    cert = self_signed_ca(key, "Azure Clean Room CA", days=100, digest=hashes.SHA384())
    store.set_ca(contract_id,
                 key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode(),
                 cert.public_bytes(serialization.Encoding.PEM).decode())


def _endorse(ca: dict[str, str], data: dict[str, Any]) -> str:
    try:
        subject_key = serialization.load_pem_public_key(data["publicKey"].encode())
    except ValueError:
        raise BadRequest("data.publicKey: not a PEM public key") from None
    ca_key = serialization.load_pem_private_key(ca["key"].encode(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca["cert"].encode())
    subject = data.get("subjectName") or "CN=clean room"
    cn = subject[3:] if subject.upper().startswith("CN=") else subject
    sans: list[x509.GeneralName] = []
    for san in data.get("subjectAlternateNames") or []:
        kind, _, value = str(san).partition(":")
        if not value:
            kind, value = "dNSName", kind
        if kind.lower() in ("ipaddress", "ip"):
            sans.append(x509.IPAddress(ipaddress.ip_address(value)))
        else:
            sans.append(x509.DNSName(value))
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(subject_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=int(data.get("validityPeriodDays") or 30)))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA384()).public_bytes(serialization.Encoding.PEM).decode()
