"""The mock platform: same algorithms as AMD's and Microsoft's, trusted only when asked."""

from __future__ import annotations

import dataclasses
import hashlib
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidecars.attestation import AttestationError, MockPlatform, MockSnpProvider, SnpReport, Trust, verify_evidence
from sidecars.common.errors import ConfigError

POLICY_HASH = hashlib.sha256(b"package policy\n").digest()


def test_mock_chain_uses_amds_algorithms(mock_platform):
    vcek, ask, ark = x509.load_pem_x509_certificates(mock_platform.vcek_chain_pem)
    assert isinstance(vcek.public_key(), ec.EllipticCurvePublicKey)
    assert vcek.public_key().curve.name == "secp384r1"
    for cert in (ask, ark):
        assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 4096
    for cert in (vcek, ask, ark):
        assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    assert ark.subject == ark.issuer == ask.issuer and vcek.issuer == ask.subject


def test_private_keys_are_private(mock_platform):
    for key in mock_platform.directory.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_mock_report_is_rejected_unless_the_platform_is_trusted(mock_platform):
    evidence = MockSnpProvider(mock_platform, host_data=POLICY_HASH).get_evidence(b"nonce")
    with pytest.raises(AttestationError, match="unknown certificate chain"):
        verify_evidence(evidence)
    claims = verify_evidence(evidence, Trust.default().trusting_mock_platform(mock_platform.directory))
    assert claims["x-ms-sevsnpvm-hostdata"] == POLICY_HASH.hex()


def test_mock_platforms_do_not_trust_each_other(mock_platform, tmp_path):
    other = MockPlatform.create(tmp_path / "other")
    evidence = MockSnpProvider(other).get_evidence(b"")
    with pytest.raises(AttestationError, match="not signed by the trusted"):
        verify_evidence(evidence, Trust.default().trusting_mock_platform(mock_platform.directory))


def test_mock_claims_follow_the_configuration(mock_platform, mock_trust):
    measurement = hashlib.sha384(b"another uvm").digest()
    provider = MockSnpProvider(mock_platform, host_data=POLICY_HASH, measurement=measurement, debug=True, vmpl=1,
                               guest_svn=5)
    claims = verify_evidence(provider.get_evidence(b"\xab" * 32), mock_trust)
    assert claims["x-ms-sevsnpvm-hostdata"] == POLICY_HASH.hex()
    assert claims["x-ms-sevsnpvm-launchmeasurement"] == measurement.hex()
    assert claims["x-ms-sevsnpvm-is-debuggable"] is True
    assert claims["x-ms-sevsnpvm-vmpl"] == 1 and claims["x-ms-sevsnpvm-guestsvn"] == 5
    assert claims["x-ms-sevsnpvm-reportdata"] == "ab" * 32 + "00" * 32
    # a mock platform's endorsement: the mock's own status, never the one only Microsoft's UVM signer earns
    assert claims["x-ms-compliance-status"] == "ccr-mock-uvm"


def test_mock_without_uvm_endorsement_is_not_compliant(mock_platform, mock_trust):
    claims = verify_evidence(MockSnpProvider(mock_platform, endorse_uvm=False).get_evidence(b""), mock_trust)
    assert "x-ms-compliance-status" not in claims


def test_flipped_mock_report_is_rejected(mock_platform, mock_trust):
    evidence = MockSnpProvider(mock_platform, host_data=POLICY_HASH).get_evidence(b"")
    data = bytearray(evidence.report)
    data[0xC0] ^= 0xFF
    with pytest.raises(AttestationError, match="bad report signature"):
        verify_evidence(dataclasses.replace(evidence, report=bytes(data)), mock_trust)


def test_each_report_has_a_fresh_report_id(mock_platform):
    provider = MockSnpProvider(mock_platform)
    ids = {SnpReport.parse(provider.get_evidence(b"").report).report_id for _ in range(3)}
    assert len(ids) == 3


def test_create_reuses_and_load_reads(mock_platform):
    again = MockPlatform.create(mock_platform.directory)
    assert again.chip_id == mock_platform.chip_id
    assert MockPlatform.load(mock_platform.directory).uvm_endorser == mock_platform.uvm_endorser


def test_load_of_a_non_platform_names_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="not a mock platform directory"):
        MockPlatform.load(tmp_path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"host_data": b"short"}, "HOST_DATA must be 32 bytes"),
    ({"measurement": b"short"}, "MEASUREMENT must be 48 bytes"),
])
def test_provider_checks_sizes(mock_platform, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MockSnpProvider(mock_platform, **kwargs)


def test_report_data_longer_than_64_bytes_is_refused(mock_platform):
    with pytest.raises(ConfigError, match="at most 64 bytes"):
        MockSnpProvider(mock_platform).get_evidence(bytes(65))
