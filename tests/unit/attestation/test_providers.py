"""The real provider's kernel ABI: struct layout, the ioctl number, and a full request against a fake
driver that reads the request through the pointers as the kernel does."""

from __future__ import annotations

import base64
import ctypes
import errno
import json

import pytest

from sidecars.attestation import AttestationError, RealSnpProvider
from sidecars.attestation.providers import (
    SNP_GET_REPORT,
    SnpGuestRequestIoctl,
    SnpReportReq,
    SnpReportResp,
    get_report,
    parse_report_response,
)


def test_struct_layout_matches_the_kernel_abi():
    assert ctypes.sizeof(SnpReportReq) == 96
    assert (SnpReportReq.user_data.offset, SnpReportReq.vmpl.offset, SnpReportReq.rsvd.offset) == (0, 64, 68)
    assert ctypes.sizeof(SnpReportResp) == 4000
    assert ctypes.sizeof(SnpGuestRequestIoctl) == 32
    assert (SnpGuestRequestIoctl.msg_version.offset, SnpGuestRequestIoctl.req_data.offset,
            SnpGuestRequestIoctl.resp_data.offset, SnpGuestRequestIoctl.exitinfo2.offset) == (0, 8, 16, 24)
    assert SNP_GET_REPORT == 0xC0205300


def _firmware_response(report: bytes, status: int = 0, size: int | None = None) -> bytes:
    header = status.to_bytes(4, "little") + (len(report) if size is None else size).to_bytes(4, "little")
    return (header + bytes(24) + report).ljust(4000, b"\0")


@pytest.fixture
def device(tmp_path):
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return str(path)


def test_get_report_through_a_fake_driver(device, real_evidence):
    seen = {}

    def fake_ioctl(fd, request, arg):
        seen["request"] = request
        seen["msg_version"] = arg.msg_version
        req = SnpReportReq.from_address(arg.req_data)
        seen["user_data"] = bytes(req.user_data)
        seen["vmpl"] = req.vmpl
        ctypes.memmove(arg.resp_data, _firmware_response(real_evidence.report), 4000)
        return 0

    report = get_report(b"\x42" * 32, vmpl=1, device=device, ioctl=fake_ioctl)
    assert report == real_evidence.report
    assert seen == {"request": 0xC0205300, "msg_version": 1, "user_data": b"\x42" * 32 + bytes(32), "vmpl": 1}


def test_firmware_error_is_reported(device, real_evidence):
    def failing_ioctl(fd, request, arg):
        arg.exitinfo2 = 0x16
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(AttestationError, match="SNP_GET_REPORT failed: Input/output error; firmware/VMM error 0x16"):
        get_report(b"", device=device, ioctl=failing_ioctl)


def test_firmware_status_and_size_are_checked(real_evidence):
    assert parse_report_response(_firmware_response(real_evidence.report)) == real_evidence.report
    with pytest.raises(AttestationError, match="status 0x16"):
        parse_report_response(_firmware_response(real_evidence.report, status=0x16))
    with pytest.raises(AttestationError, match="1000-byte report"):
        parse_report_response(_firmware_response(real_evidence.report, size=1000))


def test_missing_device_is_an_attestation_error(tmp_path):
    with pytest.raises(AttestationError, match="cannot open"):
        get_report(b"", device=str(tmp_path / "absent"))
    assert RealSnpProvider.available(str(tmp_path / "absent")) is False


def test_real_provider_reads_the_security_context(tmp_path, real_evidence, monkeypatch):
    """The C-ACI host's files: host-amd-cert-base64 (THIM JSON) and reference-info-base64 (COSE)."""
    vcek, _, rest = real_evidence.vcek_chain_pem.partition(b"-----END CERTIFICATE-----\n")
    certs = {"vcekCert": (vcek + b"-----END CERTIFICATE-----\n").decode(), "certificateChain": rest.decode(),
             "tcbm": "DB18000000000004"}
    (tmp_path / "host-amd-cert-base64").write_text(base64.b64encode(json.dumps(certs).encode()).decode())
    (tmp_path / "reference-info-base64").write_text(base64.b64encode(real_evidence.uvm_endorsement).decode())
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    monkeypatch.setattr("sidecars.attestation.providers._fcntl_ioctl", lambda fd, request, arg: ctypes.memmove(
        arg.resp_data, _firmware_response(real_evidence.report), 4000))
    provider = RealSnpProvider(device=str(device), security_context_dir=str(tmp_path))
    from sidecars.attestation import verify_evidence

    evidence = provider.get_evidence(b"")
    assert evidence.uvm_endorsement == real_evidence.uvm_endorsement
    assert verify_evidence(evidence)["x-ms-compliance-status"] == "azure-compliant-uvm"


def test_real_provider_without_security_context(tmp_path):
    with pytest.raises(AttestationError, match="UVM_SECURITY_CONTEXT_DIR is not set"):
        RealSnpProvider(security_context_dir=None).vcek_chain_pem()
