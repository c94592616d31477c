"""The AMD side of verification: the VCEK certificate chain and the report signature.

The chain a room presents is VCEK → ASK → ARK. Only the VCEK and the ASK are taken from it: the ASK must
be signed by an ARK the verifier already holds (AMD's published roots, embedded here, pinned by their
SHA-256). The ARK in the presented chain is never trusted for what it says about itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..common.errors import AttestationError
from .report import SIG_ALGO_ECDSA_P384_SHA384, SnpReport

# SHA-256 of the DER of AMD's ARKs as published by the AMD KDS (kdsintf.amd.com/vcek/v1/<product>/cert_chain).
AMD_ARK_SHA256 = {
    "ark-milan.pem": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "ark-genoa.pem": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
}

# AMD's VCEK extensions (SEV-SNP "Versioned Chip Endorsement Key" specification).
OID_BL_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1")
OID_TEE_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.2")
OID_SNP_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.3")
OID_UCODE_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8")
OID_HW_ID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")
OID_PRODUCT_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.2")
OID_STRUCT_VERSION = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.1")


P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffff"
                 "c7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)


def der_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_pem_chain(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        with warnings.catch_warnings():
            # Real VCEKs carry serial number 0, which cryptography warns about but accepts.
            warnings.simplefilter("ignore")
            certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise AttestationError(f"{what}: not a PEM certificate chain ({exc})") from None
    return certs


@cache
def amd_roots() -> tuple[x509.Certificate, ...]:
    """AMD's ARK-Milan and ARK-Genoa, loaded from the package and checked against their pinned hashes."""
    roots = []
    for name, expected in AMD_ARK_SHA256.items():
        cert = load_pem_chain(resources.files(__package__).joinpath(name).read_bytes(), name)[0]
        if der_sha256(cert) != expected:
            raise AttestationError(f"embedded AMD root {name} does not match its pinned SHA-256")
        roots.append(cert)
    return tuple(roots)


def _verify_issued_by(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        reason = "signature does not verify" if isinstance(exc, InvalidSignature) else str(exc)
        raise AttestationError(f"{what}: not issued by {issuer.subject.rfc4514_string()} ({reason})") from None


def _check_validity(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AttestationError(f"{what} is outside its validity period "
                               f"({cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d})")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


@dataclass(frozen=True)
class VerifiedChain:
    vcek: x509.Certificate
    ask: x509.Certificate
    ark: x509.Certificate


def verify_vcek_chain(chain_pem: bytes, roots: tuple[x509.Certificate, ...],
                      now: dt.datetime | None = None) -> VerifiedChain:
    """VCEK → ASK → one of `roots`. Raises AttestationError naming the broken link."""
    chain = _verified_chain(chain_pem, roots)
    now = now or dt.datetime.now(dt.UTC)
    for cert, what in ((chain.vcek, "VCEK"), (chain.ask, "ASK"), (chain.ark, "ARK")):
        _check_validity(cert, now, what)
    return chain


# A platform presents the same chain with every report: remember chains that verified (by their exact
# bytes and the roots they verified against), so each attestation pays only for the report's signature.
@lru_cache(maxsize=64)
def _verified_chain(chain_pem: bytes, roots: tuple[x509.Certificate, ...]) -> VerifiedChain:
    certs = load_pem_chain(chain_pem, "VCEK certificate chain")
    if not certs:
        raise AttestationError("VCEK certificate chain is empty")
    vcek = certs[0]
    if not isinstance(vcek.public_key(), ec.EllipticCurvePublicKey) or vcek.public_key().curve.name != "secp384r1":
        raise AttestationError("VCEK certificate chain: the first certificate is not an EC P-384 VCEK")
    ask = next((c for c in certs[1:] if c.subject == vcek.issuer), None)
    if ask is None:
        raise AttestationError(f"VCEK certificate chain has no ASK ({vcek.issuer.rfc4514_string()})")
    if not isinstance(ask.public_key(), rsa.RSAPublicKey) or not _is_ca(ask):
        raise AttestationError("VCEK certificate chain: the ASK is not an RSA CA certificate")
    candidates = [root for root in roots if root.subject == ask.issuer]
    if not candidates:
        raise AttestationError(f"unknown certificate chain: ASK issuer {ask.issuer.rfc4514_string()} "
                               "is not a trusted AMD root")
    ark = None
    for root in candidates:
        try:
            ask.verify_directly_issued_by(root)
            ark = root
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    if ark is None:
        raise AttestationError(f"unknown certificate chain: the ASK is not signed by the trusted "
                               f"{ask.issuer.rfc4514_string()} (a root that only claims that name)")
    _verify_issued_by(vcek, ask, "VCEK")
    return VerifiedChain(vcek=vcek, ask=ask, ark=ark)


def _int_extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> int | None:
    try:
        raw = cert.extensions.get_extension_for_oid(oid).value.value
    except x509.ExtensionNotFound:
        return None
    # DER INTEGER: tag 0x02, short length, big-endian two's complement (SPLs are small and positive).
    if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2:
        raise AttestationError(f"VCEK extension {oid.dotted_string} is not a DER INTEGER")
    return int.from_bytes(raw[2:], "big", signed=True)


def vcek_hwid(cert: x509.Certificate) -> bytes | None:
    try:
        raw = cert.extensions.get_extension_for_oid(OID_HW_ID).value.value
    except x509.ExtensionNotFound:
        return None
    # AMD's KDS stores the 64 raw bytes; some tools wrap them in an OCTET STRING.
    if len(raw) == 66 and raw[:2] == b"\x04\x40":
        return raw[2:]
    return raw


def check_vcek_matches_report(vcek: x509.Certificate, report: SnpReport) -> None:
    """The VCEK is derived from one chip at one TCB: both must be the report's."""
    hwid = vcek_hwid(vcek)
    if hwid is not None and not report.chip_id_masked and hwid != report.chip_id:
        raise AttestationError("VCEK was issued for another chip (hwID differs from the report's CHIP_ID)")
    tcb = report.reported_tcb
    for oid, value, name in ((OID_BL_SPL, tcb.bootloader, "bootloader"), (OID_TEE_SPL, tcb.tee, "tee"),
                             (OID_SNP_SPL, tcb.snp, "snp"), (OID_UCODE_SPL, tcb.microcode, "microcode")):
        spl = _int_extension(vcek, oid)
        if spl is not None and spl != value:
            raise AttestationError(f"VCEK was issued for another TCB ({name} SPL {spl}, "
                                   f"report REPORTED_TCB says {value})")


def verify_report_signature(report: SnpReport, vcek: x509.Certificate) -> None:
    """ECDSA P-384/SHA-384 over bytes 0..0x29F, R and S little-endian in the report."""
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise AttestationError(f"bad report signature: unsupported signature algorithm {report.signature_algo}")
    key = vcek.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    if not (0 < report.signature_r < P384_ORDER and 0 < report.signature_s < P384_ORDER):
        raise AttestationError("bad report signature: R or S out of range")
    try:
        key.verify(encode_dss_signature(report.signature_r, report.signature_s), report.signed_bytes(),
                   ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise AttestationError("bad report signature: it does not verify with the VCEK") from None
