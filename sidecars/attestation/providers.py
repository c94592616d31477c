"""Where evidence comes from: the SEV-SNP guest device, or the mock platform.

Both providers answer `get_evidence(report_data) -> Evidence`; REPORT_DATA is the 64 bytes the caller
binds into the report (skr puts sha256(runtime data) ‖ 32 zero bytes there).

The real provider asks the PSP for a report through the kernel's sev-guest driver (ioctl SNP_GET_REPORT
on /dev/sev-guest, structs as in include/uapi/linux/sev-guest.h). On C-ACI the VCEK chain and the UVM
endorsement are not in the report: the host puts them in the directory named by
UVM_SECURITY_CONTEXT_DIR (`host-amd-cert-base64`: base64 JSON {vcekCert, certificateChain, tcbm};
`reference-info-base64`: base64 COSE_Sign1), which is where Microsoft's SKR sidecar reads them too.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..common.errors import AttestationError, ConfigError
from .evidence import Evidence
from .mock import DEFAULT_MEASUREMENT, MockPlatform
from .report import POLICY_DEBUG_BIT, REPORT_SIZE, SnpReport

SEV_GUEST_DEVICE = "/dev/sev-guest"
SECURITY_CONTEXT_ENV = "UVM_SECURITY_CONTEXT_DIR"
REPORT_DATA_SIZE = 64


class SnpProvider(Protocol):
    def get_evidence(self, report_data: bytes) -> Evidence: ...


def _report_data(report_data: bytes) -> bytes:
    if len(report_data) > REPORT_DATA_SIZE:
        raise ConfigError(f"REPORT_DATA holds at most {REPORT_DATA_SIZE} bytes, got {len(report_data)}")
    return report_data.ljust(REPORT_DATA_SIZE, b"\0")


# -- the kernel ABI (include/uapi/linux/sev-guest.h) ---------------------------------------------------
class SnpReportReq(ctypes.Structure):
    """struct snp_report_req: user_data (REPORT_DATA), the VMPL to report at, reserved."""

    _fields_ = [("user_data", ctypes.c_uint8 * 64), ("vmpl", ctypes.c_uint32), ("rsvd", ctypes.c_uint8 * 28)]


class SnpReportResp(ctypes.Structure):
    """struct snp_report_resp: the firmware's MSG_REPORT_RSP (status, report_size, reserved, report)."""

    _fields_ = [("data", ctypes.c_uint8 * 4000)]


class SnpGuestRequestIoctl(ctypes.Structure):
    """struct snp_guest_request_ioctl: message version, user pointers to request and response, and the
    firmware/VMM error (exitinfo2) the kernel writes back."""

    _fields_ = [("msg_version", ctypes.c_uint8), ("req_data", ctypes.c_uint64), ("resp_data", ctypes.c_uint64),
                ("exitinfo2", ctypes.c_uint64)]


def _iowr(kind: str, number: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | number


SNP_GET_REPORT = _iowr("S", 0x0, ctypes.sizeof(SnpGuestRequestIoctl))
_RESP_STATUS, _RESP_REPORT_SIZE, _RESP_REPORT = 0x00, 0x04, 0x20


def parse_report_response(resp: bytes) -> bytes:
    """The report inside MSG_REPORT_RSP, after checking the firmware's status and size."""
    status = int.from_bytes(resp[_RESP_STATUS:_RESP_STATUS + 4], "little")
    size = int.from_bytes(resp[_RESP_REPORT_SIZE:_RESP_REPORT_SIZE + 4], "little")
    if status != 0:
        raise AttestationError(f"SEV-SNP firmware refused the report request (status {status:#x})")
    if size != REPORT_SIZE:
        raise AttestationError(f"SEV-SNP firmware returned a {size}-byte report, expected {REPORT_SIZE}")
    return bytes(resp[_RESP_REPORT:_RESP_REPORT + size])


Ioctl = Callable[[int, int, ctypes.Structure], int]


def _fcntl_ioctl(fd: int, request: int, arg: ctypes.Structure) -> int:
    return fcntl.ioctl(fd, request, arg, True)


def get_report(report_data: bytes, *, vmpl: int = 0, device: str = SEV_GUEST_DEVICE,
               ioctl: Ioctl | None = None) -> bytes:
    """SNP_GET_REPORT: the 1184-byte report with `report_data` as REPORT_DATA. `ioctl` defaults to
    fcntl.ioctl; tests pass a fake driver."""
    req = SnpReportReq(vmpl=vmpl)
    ctypes.memmove(req.user_data, _report_data(report_data), REPORT_DATA_SIZE)
    resp = SnpReportResp()
    guest_req = SnpGuestRequestIoctl(msg_version=1, req_data=ctypes.addressof(req), resp_data=ctypes.addressof(resp))
    try:
        fd = os.open(device, os.O_RDWR)
    except OSError as exc:
        raise AttestationError(f"cannot open {device}: {exc.strerror}") from None
    try:
        (ioctl or _fcntl_ioctl)(fd, SNP_GET_REPORT, guest_req)
    except OSError as exc:
        detail = f"; firmware/VMM error {guest_req.exitinfo2:#x}" if exc.errno == errno.EIO else ""
        raise AttestationError(f"SNP_GET_REPORT failed: {exc.strerror}{detail}") from None
    finally:
        os.close(fd)
    return parse_report_response(bytes(resp.data))


@dataclass
class RealSnpProvider:
    """Evidence from the SEV-SNP hardware (/dev/sev-guest) and the host's security context directory."""

    device: str = SEV_GUEST_DEVICE
    security_context_dir: str | None = field(default_factory=lambda: os.environ.get(SECURITY_CONTEXT_ENV))
    vmpl: int = 0
    #: the platform kind the room reports (skr's /status, audit events)
    platform_kind: str = field(default="sev-snp", init=False)

    @staticmethod
    def available(device: str = SEV_GUEST_DEVICE) -> bool:
        return Path(device).exists()

    def _context_file(self, name: str) -> bytes:
        if not self.security_context_dir:
            raise AttestationError(f"{SECURITY_CONTEXT_ENV} is not set: no VCEK chain or UVM endorsement")
        path = Path(self.security_context_dir) / name
        try:
            return base64.b64decode(path.read_text().strip())
        except OSError as exc:
            raise AttestationError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise AttestationError(f"{path}: not base64") from None

    def vcek_chain_pem(self) -> bytes:
        try:
            certs = json.loads(self._context_file("host-amd-cert-base64"))
            return (certs["vcekCert"].strip() + "\n" + certs["certificateChain"].strip() + "\n").encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AttestationError("host-amd-cert-base64: expected JSON {vcekCert, certificateChain}") from None

    def uvm_endorsement(self) -> bytes:
        """The COSE_Sign1 with which Microsoft endorses the UVM's launch measurement."""
        return self._context_file("reference-info-base64")

    def security_policy(self) -> str:
        """The group's CCE policy (Rego) as the platform enforces it: `security-policy-base64`. Its SHA-256
        is the report's HOST_DATA (`security_policy_hash`)."""
        try:
            return self._context_file("security-policy-base64").decode()
        except UnicodeDecodeError:
            raise AttestationError("security-policy-base64: the policy is not UTF-8 text") from None

    def security_policy_hash(self) -> str:
        return hashlib.sha256(self._context_file("security-policy-base64")).hexdigest()

    def get_evidence(self, report_data: bytes) -> Evidence:
        report = get_report(report_data, vmpl=self.vmpl, device=self.device)
        return Evidence(report=report, vcek_chain_pem=self.vcek_chain_pem(), uvm_endorsement=self.uvm_endorsement())


@dataclass
class MockSnpProvider:
    """Evidence signed by a mock platform's VCEK, with chosen HOST_DATA, MEASUREMENT and debug policy."""

    platform: MockPlatform
    host_data: bytes = bytes(32)
    measurement: bytes | None = None
    debug: bool = False
    vmpl: int = 0
    guest_svn: int = 2
    endorse_uvm: bool = True
    #: the platform kind the room reports: never that of hardware
    platform_kind: str = field(default="mock", init=False)
    _endorsement: bytes = field(default=b"", init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.host_data) != 32:
            raise ConfigError(f"HOST_DATA must be 32 bytes, got {len(self.host_data)}")
        if self.measurement is None:
            self.measurement = bytes.fromhex(DEFAULT_MEASUREMENT)
        if len(self.measurement) != 48:
            raise ConfigError(f"MEASUREMENT must be 48 bytes, got {len(self.measurement)}")

    def build_report(self, report_data: bytes) -> SnpReport:
        base = SnpReport()
        policy = base.policy | (1 << POLICY_DEBUG_BIT) if self.debug else base.policy
        tcb = self.platform.reported_tcb
        return SnpReport(
            version=3, guest_svn=self.guest_svn, policy=policy, family_id=b"\x01".ljust(16, b"\0"),
            image_id=b"\x02".ljust(16, b"\0"), vmpl=self.vmpl, current_tcb=tcb, platform_info=0x25,
            report_data=_report_data(report_data), measurement=self.measurement, host_data=self.host_data,
            report_id=os.urandom(32), reported_tcb=tcb, chip_id=self.platform.chip_id, committed_tcb=tcb,
            launch_tcb=tcb,
        )

    def sign(self, report: SnpReport) -> bytes:
        """Sign `report` with the mock VCEK (ECDSA P-384/SHA-384) and return its 1184 bytes."""
        der = self.platform.vcek_key.sign(report.signed_bytes(), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return report.with_signature(r, s).to_bytes()

    def get_evidence(self, report_data: bytes) -> Evidence:
        if self.endorse_uvm and not self._endorsement:
            self._endorsement = self.platform.endorse_uvm(self.measurement)
        return Evidence(report=self.sign(self.build_report(report_data)),
                        vcek_chain_pem=self.platform.vcek_chain_pem,
                        uvm_endorsement=self._endorsement if self.endorse_uvm else b"")
