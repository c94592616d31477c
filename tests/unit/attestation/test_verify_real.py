"""Verification of real C-ACI evidence, and of every way of tampering with it."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from sidecars.attestation import AttestationError, Evidence, SnpReport, Trust, verify_evidence
from sidecars.attestation.verify import verify_maa_request

EXPECTED = {
    "x-ms-attestation-type": "sevsnpvm",
    "x-ms-compliance-status": "azure-compliant-uvm",
    "x-ms-sevsnpvm-hostdata": "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20",
    "x-ms-sevsnpvm-launchmeasurement": "d0c9e2be22046e60779be88868cff64c2aa22047c15d3127ba495cee3fbc2854"
                                       "c5633f9da2096e6c64ae2b69bbff8082",
    "x-ms-sevsnpvm-is-debuggable": False,
    "x-ms-sevsnpvm-migration-allowed": False,
    "x-ms-sevsnpvm-smt-allowed": True,
    "x-ms-sevsnpvm-vmpl": 0,
    "x-ms-sevsnpvm-guestsvn": 2,
    "x-ms-sevsnpvm-bootloader-svn": 4,
    "x-ms-sevsnpvm-tee-svn": 0,
    "x-ms-sevsnpvm-snpfw-svn": 24,
    "x-ms-sevsnpvm-microcode-svn": 219,
    "x-ms-sevsnpvm-familyId": "01000000000000000000000000000000",
    "x-ms-sevsnpvm-imageId": "02000000000000000000000000000000",
    "x-ms-ver": "1.0",
}


def _check_expected(claims):
    for name, value in EXPECTED.items():
        assert claims[name] == value, name
        assert type(claims[name]) is type(value), name


def test_real_attestation_json_verifies(real_evidence, caci_dir):
    claims = verify_evidence(real_evidence)
    _check_expected(claims)
    pub_key_hash = hashlib.sha256((caci_dir / "pub_key.pem").read_bytes()).hexdigest()
    assert claims["x-ms-sevsnpvm-reportdata"] == pub_key_hash + "00" * 32
    assert pub_key_hash.startswith("2097b3fd") and pub_key_hash.endswith("b787")


def test_real_maa_request_verifies_with_binding(real_maa_request, caci_dir):
    claims = verify_maa_request(real_maa_request)
    _check_expected(claims)
    runtime_hash = hashlib.sha256(real_maa_request.runtime_data).hexdigest()
    assert runtime_hash.startswith("8b2e75ca") and runtime_hash.endswith("6086")
    assert claims["x-ms-sevsnpvm-reportdata"] == runtime_hash + "00" * 32
    assert claims["x-ms-runtime"]["keys"][0]["kid"] == "96478d5f"
    assert claims["x-ms-runtime"]["keys"][0]["n"].startswith("4t4N2_714c5tjeVPqyDu8uu")


def test_maa_request_with_other_runtime_data_is_a_binding_mismatch(real_maa_request):
    other = dataclasses.replace(real_maa_request, runtime_data=real_maa_request.runtime_data + b" ")
    with pytest.raises(AttestationError, match="runtime data binding mismatch"):
        verify_maa_request(other)


def test_init_time_data_must_hash_to_host_data(real_maa_request, caci_dir):
    import base64

    values = dict(line.split(": ", 1) for line in (caci_dir / "values.txt").read_text().splitlines() if ": " in line)
    policy = base64.b64decode(values["ccepolicy"])
    bound = dataclasses.replace(real_maa_request, init_time_data=policy, init_time_data_type="Binary")
    assert verify_maa_request(bound)["x-ms-sevsnpvm-hostdata"] == hashlib.sha256(policy).hexdigest()
    with pytest.raises(AttestationError, match="init-time data binding mismatch"):
        verify_maa_request(dataclasses.replace(bound, init_time_data=policy + b"\n"))


def _flip(evidence: Evidence, offset: int) -> Evidence:
    data = bytearray(evidence.report)
    data[offset] ^= 0x01
    return dataclasses.replace(evidence, report=bytes(data))


@pytest.mark.parametrize(("offset", "reason"), [
    (0x000, "bad report signature"),            # version 3 -> 2: still parses, signature breaks
    (0x004, "bad report signature"),            # guest svn
    (0x00A, "bad report signature"),            # policy: debug bit 19
    (0x030, "bad report signature"),            # VMPL
    (0x034, "bad report signature"),            # signature algorithm
    (0x050, "bad report signature"),            # REPORT_DATA
    (0x08F, "bad report signature"),            # last byte of REPORT_DATA
    (0x090, "bad report signature"),            # MEASUREMENT
    (0x0C0, "bad report signature"),            # HOST_DATA
    (0x0DF, "bad report signature"),            # last byte of HOST_DATA
    (0x180, "bad report signature"),            # REPORTED_TCB
    (0x1A0, "bad report signature"),            # CHIP_ID
    (0x29F, "bad report signature"),            # last signed byte
    (0x2A0, "bad report signature"),            # R, lowest byte
    (0x2D0, "bad report signature"),            # R, beyond 384 bits
    (0x2E8, "bad report signature"),            # S
    (0x330, "reserved bytes"),                  # after S: reserved, not signed
    (0x49F, "reserved bytes"),                  # last byte
])
def test_flipped_byte_is_rejected_with_reason(real_evidence, offset, reason):
    with pytest.raises(AttestationError, match=reason):
        verify_evidence(_flip(real_evidence, offset))


def test_every_flipped_byte_is_rejected(real_evidence):
    accepted = []
    for offset in range(len(real_evidence.report)):
        try:
            verify_evidence(_flip(real_evidence, offset))
            accepted.append(offset)
        except AttestationError as exc:
            assert exc.message
    assert accepted == []


def test_resigned_report_with_changed_host_data_is_rejected(real_evidence, mock_platform):
    from sidecars.attestation import MockSnpProvider

    changed = SnpReport.parse(real_evidence.report).with_fields(host_data=bytes(32))
    forged = MockSnpProvider(mock_platform).sign(changed)
    with pytest.raises(AttestationError, match="bad report signature"):
        verify_evidence(dataclasses.replace(real_evidence, report=forged))


def test_the_chain_own_ark_is_irrelevant(real_evidence):
    """Verification anchors on the pinned ARK: dropping the presented ARK changes nothing."""
    vcek_and_ask = b"".join(real_evidence.vcek_chain_pem.partition(b"-----END CERTIFICATE-----\n")[:2])
    second = real_evidence.vcek_chain_pem[len(vcek_and_ask):]
    vcek_and_ask += b"".join(second.partition(b"-----END CERTIFICATE-----\n")[:2])
    assert vcek_and_ask.count(b"BEGIN CERTIFICATE") == 2
    verify_evidence(dataclasses.replace(real_evidence, vcek_chain_pem=vcek_and_ask))


def test_without_the_milan_root_the_real_chain_is_unknown(real_evidence):
    genoa_only = Trust(amd_roots=tuple(r for r in Trust.default().amd_roots if "Genoa" in r.subject.rfc4514_string()),
                       uvm_endorsers=Trust.default().uvm_endorsers)
    with pytest.raises(AttestationError, match="unknown certificate chain"):
        verify_evidence(real_evidence, genoa_only)


def test_missing_ask_is_rejected(real_evidence):
    vcek_only = b"".join(real_evidence.vcek_chain_pem.partition(b"-----END CERTIFICATE-----\n")[:2])
    with pytest.raises(AttestationError, match="no ASK"):
        verify_evidence(dataclasses.replace(real_evidence, vcek_chain_pem=vcek_only))


def test_garbage_chain_is_rejected(real_evidence):
    with pytest.raises(AttestationError, match="not a PEM certificate chain|empty"):
        verify_evidence(dataclasses.replace(real_evidence, vcek_chain_pem=b"not a chain"))


def test_expired_chain_is_rejected(real_evidence):
    import datetime as dt

    with pytest.raises(AttestationError, match="VCEK is outside its validity period"):
        verify_evidence(real_evidence, now=dt.datetime(2033, 1, 1, tzinfo=dt.UTC))


def test_evidence_without_uvm_endorsement_is_not_compliant(real_evidence):
    claims = verify_evidence(dataclasses.replace(real_evidence, uvm_endorsement=b""))
    assert "x-ms-compliance-status" not in claims
    assert claims["x-ms-sevsnpvm-hostdata"] == EXPECTED["x-ms-sevsnpvm-hostdata"]
