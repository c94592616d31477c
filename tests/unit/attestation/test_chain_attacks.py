"""Attacks on the AMD chain: a self-made root that claims AMD's name, and a VCEK for another chip/TCB."""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sidecars.attestation import AttestationError, SnpReport, verify_evidence

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _real_chain(evidence):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificates(evidence.vcek_chain_pem)


def _cert(subject, issuer, public_key, signing_key, *, ca, extensions=()):
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extensions:
        builder = builder.add_extension(ext.value, critical=False)
    return builder.sign(signing_key, hashes.SHA384(), rsa_padding=PSS)


def _pem(*certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _sign(report: SnpReport, key: ec.EllipticCurvePrivateKey) -> bytes:
    r, s = decode_dss_signature(key.sign(report.signed_bytes(), ec.ECDSA(hashes.SHA384())))
    return report.with_signature(r, s).to_bytes()


@pytest.fixture(scope="module")
def fake_amd(real_evidence):
    """A complete chain with AMD's exact names (ARK-Milan, SEV-Milan, SEV-VCEK and the real VCEK's
    extensions), rooted in a self-signed ARK that is not AMD's."""
    real_vcek, real_ask, real_ark = _real_chain(real_evidence)
    ark_key = rsa.generate_private_key(65537, 2048)
    ask_key = rsa.generate_private_key(65537, 2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    ark = _cert(real_ark.subject, real_ark.subject, ark_key.public_key(), ark_key, ca=True)
    ask = _cert(real_ask.subject, real_ark.subject, ask_key.public_key(), ark_key, ca=True)
    vcek = _cert(real_vcek.subject, real_ask.subject, vcek_key.public_key(), ask_key, ca=False,
                 extensions=list(real_vcek.extensions))
    return {"ark": ark, "ask": ask, "vcek": vcek, "vcek_key": vcek_key, "real_ask": real_ask, "real_ark": real_ark}


def test_self_signed_fake_ark_is_rejected(real_evidence, fake_amd):
    report = SnpReport.parse(real_evidence.report)
    forged = dataclasses.replace(real_evidence, report=_sign(report, fake_amd["vcek_key"]),
                                 vcek_chain_pem=_pem(fake_amd["vcek"], fake_amd["ask"], fake_amd["ark"]))
    with pytest.raises(AttestationError, match="unknown certificate chain: the ASK is not signed by the trusted"):
        verify_evidence(forged)


def test_fake_vcek_under_the_real_ask_is_rejected(real_evidence, fake_amd):
    """The real ASK and ARK with a VCEK the attacker made: the VCEK is not signed by the real ASK."""
    report = SnpReport.parse(real_evidence.report)
    forged = dataclasses.replace(real_evidence, report=_sign(report, fake_amd["vcek_key"]),
                                 vcek_chain_pem=_pem(fake_amd["vcek"], fake_amd["real_ask"], fake_amd["real_ark"]))
    with pytest.raises(AttestationError, match="VCEK: not issued by"):
        verify_evidence(forged)


def test_report_of_another_chip_is_rejected(mock_platform, mock_trust):
    """A genuinely signed report whose CHIP_ID is not the VCEK's chip (a VCEK from another machine)."""
    from sidecars.attestation import MockSnpProvider

    provider = MockSnpProvider(mock_platform)
    report = provider.build_report(b"x").with_fields(chip_id=b"\x99" * 64)
    evidence = dataclasses.replace(provider.get_evidence(b"x"), report=provider.sign(report))
    with pytest.raises(AttestationError, match="another chip"):
        verify_evidence(evidence, mock_trust)


def test_report_at_another_tcb_is_rejected(mock_platform, mock_trust):
    from sidecars.attestation import MockSnpProvider, TcbVersion

    provider = MockSnpProvider(mock_platform)
    report = provider.build_report(b"x").with_fields(reported_tcb=TcbVersion(4, 0, 23, 219))
    evidence = dataclasses.replace(provider.get_evidence(b"x"), report=provider.sign(report))
    with pytest.raises(AttestationError, match="another TCB"):
        verify_evidence(evidence, mock_trust)


def test_embedded_amd_roots_are_amds():
    """Both pins load, match their published SHA-256, are self-signed RSA-4096 RSASSA-PSS roots."""
    from sidecars.attestation.amd import AMD_ARK_SHA256, amd_roots, der_sha256

    roots = amd_roots()
    assert {r.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value for r in roots} == {
        "ARK-Milan", "ARK-Genoa"}
    assert sorted(der_sha256(r) for r in roots) == sorted(AMD_ARK_SHA256.values())
    for root in roots:
        root.verify_directly_issued_by(root)
        assert root.public_key().key_size == 4096
        assert root.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
