"""The contract CA, as CGS runs it: an accepted `enable_ca` proposal enables it, a member then asks for its
signing key (`ca/generateSigningKey`), members read its state and certificate (`ca/status`), and a room with
consent gets a certificate for its own key endorsed by it."""

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

from ...common.errors import BadRequest, CcrError, NotFound
from ...common.tls import self_signed_ca
from . import schemas
from .deps import Cgs, MemberAuth, SignedReleaseRoomAuth
from .store import Store

router = APIRouter()
# The contract CA itself lives 100 days; an endorsed certificate may not outlive that by much.
MAX_VALIDITY_DAYS = 365


@router.post("/app/contracts/{contract_id}/ca/status", response_model=None)
async def ca_status(contract_id: str, cgs: Cgs, _: MemberAuth) -> dict[str, Any]:
    """CGS's `ca/status`: whether an accepted proposal enabled the CA, the open proposals to, and once a member
    asked for the signing key, the CA's certificate and public key."""
    open_ids = [p["proposalId"] for p in cgs.store.open_proposals() if any(
        a["name"] == "enable_ca" and a["args"].get("contractId") == contract_id for a in p["actions"])]
    ca = cgs.store.state.ca.get(contract_id, {})
    info: dict[str, Any] = {"enabled": ca.get("enabled") == "true", "proposalIds": open_ids}
    if info["enabled"] and ca.get("cert"):
        info.update(caCert=ca["cert"], publicKey=ca["publicKey"])
    return info


@router.post("/app/contracts/{contract_id}/ca/generateSigningKey", response_model=None)
async def generate_signing_key(contract_id: str, cgs: Cgs, caller: MemberAuth) -> dict[str, str]:
    """The CA's key is made only when the members asked for it: an accepted `enable_ca` (or rotation) bumps the
    request id, and this creates a key for a request id that has none yet; asking again changes nothing."""
    ca = cgs.store.state.ca.get(contract_id, {})
    if ca.get("enabled") != "true":
        raise CcrError("CA support has not been enabled for this contract.", code="CANotEnabled", http_status=405)
    if ca.get("keyRequestId") != ca["requestId"]:
        with cgs.change():
            generate_ca_key(cgs.store, contract_id)
            cgs.record(contract_id, caller.who, "ca_generate_signing_key", requestId=ca["requestId"])
    return {"requestId": ca["requestId"]}


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


def generate_ca_key(store: Store, contract_id: str) -> None:
    """A new CA key and self-signed certificate for the contract's current request id."""
    key = ec.generate_private_key(ec.SECP384R1())
    cert = self_signed_ca(key, "Azure Clean Room CA", days=100, digest=hashes.SHA384())
    store.set_ca_key(contract_id,
                     key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode(),
                     cert.public_bytes(serialization.Encoding.PEM).decode(),
                     key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode())


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
