"""The SNP report model: the real report's fields, and build → parse round trips."""

from __future__ import annotations

import hashlib

import pytest

from sidecars.attestation import REPORT_SIZE, AttestationError, SnpReport, TcbVersion


def test_real_report_fields(real_evidence, caci_dir):
    report = SnpReport.parse(real_evidence.report)
    assert len(real_evidence.report) == REPORT_SIZE == 1184
    header = (report.version, report.guest_svn, report.policy, report.vmpl, report.signature_algo)
    assert header == (3, 2, 0x3001F, 0, 1)
    assert report.is_debuggable is False
    assert report.smt_allowed is True and report.migration_allowed is False
    assert report.host_data.hex() == "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20"
    assert report.measurement.hex() == ("d0c9e2be22046e60779be88868cff64c2aa22047c15d3127ba495cee3fbc2854"
                                        "c5633f9da2096e6c64ae2b69bbff8082")
    assert report.report_data == hashlib.sha256((caci_dir / "pub_key.pem").read_bytes()).digest() + bytes(32)
    assert report.reported_tcb.to_bytes().hex() == "04000000000018db"
    assert report.reported_tcb == TcbVersion(bootloader=4, tee=0, snp=24, microcode=219)
    assert report.chip_id.hex().startswith("75ea8085") and report.chip_id.hex().endswith("1673")
    assert len(report.chip_id) == 64
    assert report.signature_r.bit_length() <= 384 and report.signature_s.bit_length() <= 384


def test_host_data_is_the_policy_hash(real_evidence, caci_dir):
    import base64

    values = dict(line.split(": ", 1) for line in (caci_dir / "values.txt").read_text().splitlines() if ": " in line)
    policy = base64.b64decode(values["ccepolicy"])
    assert SnpReport.parse(real_evidence.report).host_data == hashlib.sha256(policy).digest()


def test_real_report_reencodes_to_the_same_bytes(real_evidence):
    report = SnpReport.parse(real_evidence.report)
    rebuilt = report.with_signature(report.signature_r, report.signature_s)
    assert rebuilt.raw == b""
    assert rebuilt.to_bytes() == real_evidence.report


def test_build_then_parse_round_trip():
    report = SnpReport(guest_svn=7, policy=0x3001F | 1 << 19, vmpl=2, report_data=b"\x01" * 64,
                       measurement=b"\x02" * 48, host_data=b"\x03" * 32, chip_id=b"\x04" * 64,
                       reported_tcb=TcbVersion(1, 2, 3, 4), signature_r=12345, signature_s=67890)
    parsed = SnpReport.parse(report.to_bytes())
    assert parsed == report
    assert parsed.is_debuggable is True
    assert parsed.to_bytes()[0x30:0x34] == (2).to_bytes(4, "little")
    assert parsed.to_bytes()[0xC0:0xE0] == b"\x03" * 32
    assert parsed.to_bytes()[0x2A0:0x2A0 + 72] == (12345).to_bytes(72, "little")


def test_with_fields_clears_the_signature(real_evidence):
    report = SnpReport.parse(real_evidence.report).with_fields(host_data=bytes(32))
    assert (report.signature_r, report.signature_s) == (0, 0)
    assert report.signed_bytes()[0xC0:0xE0] == bytes(32)


@pytest.mark.parametrize("length", [0, 1183, 1185, 4000])
def test_wrong_size_is_rejected(real_evidence, length):
    with pytest.raises(AttestationError, match="expected 1184"):
        SnpReport.parse((real_evidence.report * 4)[:length])


def test_unknown_version_is_rejected(real_evidence):
    data = bytearray(real_evidence.report)
    data[0] = 0x7F
    with pytest.raises(AttestationError, match="unsupported SNP report version 127"):
        SnpReport.parse(bytes(data))


def test_reserved_signature_bytes_must_be_zero(real_evidence):
    data = bytearray(real_evidence.report)
    data[0x2A0 + 144] ^= 1
    with pytest.raises(AttestationError, match="reserved bytes"):
        SnpReport.parse(bytes(data))


def test_field_sizes_are_checked_when_building():
    with pytest.raises(ValueError, match="host_data must be 32 bytes"):
        SnpReport(host_data=b"short").to_bytes()
