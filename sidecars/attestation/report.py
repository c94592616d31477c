"""The SEV-SNP attestation report (AMD SEV-SNP ABI, "ATTESTATION_REPORT"): 1184 bytes, little-endian.

`SnpReport` parses every field a verifier uses and builds a report back from its fields (the mock
provider signs what `signed_bytes()` returns). The signature covers bytes 0..0x29F; it is ECDSA
P-384/SHA-384 with R and S stored as 72-byte little-endian integers, followed by reserved zero bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from ..common.errors import AttestationError

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SIGNATURE_COMPONENT_SIZE = 72
SIGNATURE_AREA_SIZE = REPORT_SIZE - SIGNED_SIZE
SIG_ALGO_ECDSA_P384_SHA384 = 1
SUPPORTED_VERSIONS = (2, 3, 4, 5)

POLICY_SMT_BIT = 16
POLICY_RESERVED_ONE_BIT = 17
POLICY_MIGRATE_MA_BIT = 18
POLICY_DEBUG_BIT = 19
POLICY_SINGLE_SOCKET_BIT = 20

# Field offsets (ABI table "ATTESTATION_REPORT Structure").
_VERSION, _GUEST_SVN, _POLICY, _FAMILY_ID, _IMAGE_ID = 0x00, 0x04, 0x08, 0x10, 0x20
_VMPL, _SIG_ALGO, _CURRENT_TCB, _PLATFORM_INFO, _FLAGS = 0x30, 0x34, 0x38, 0x40, 0x48
_REPORT_DATA, _MEASUREMENT, _HOST_DATA = 0x50, 0x90, 0xC0
_ID_KEY_DIGEST, _AUTHOR_KEY_DIGEST, _REPORT_ID, _REPORT_ID_MA = 0xE0, 0x110, 0x140, 0x160
_REPORTED_TCB, _CPUID, _CHIP_ID, _COMMITTED_TCB = 0x180, 0x188, 0x1A0, 0x1E0
_CURRENT_VERSION, _COMMITTED_VERSION, _LAUNCH_TCB = 0x1E8, 0x1EC, 0x1F0


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION (Milan/Genoa layout): security patch levels of each firmware component."""

    bootloader: int = 0
    tee: int = 0
    snp: int = 0
    microcode: int = 0

    @classmethod
    def from_bytes(cls, raw: bytes) -> TcbVersion:
        return cls(bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def to_bytes(self) -> bytes:
        return bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])


@dataclass(frozen=True)
class SnpReport:
    """Every field of an SNP attestation report. Byte fields hold their exact stored bytes."""

    version: int = 3
    guest_svn: int = 0
    policy: int = (1 << POLICY_RESERVED_ONE_BIT) | (1 << POLICY_SMT_BIT) | 0x1F
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    vmpl: int = 0
    signature_algo: int = SIG_ALGO_ECDSA_P384_SHA384
    current_tcb: TcbVersion = field(default_factory=TcbVersion)
    platform_info: int = 0
    flags: int = 0
    report_data: bytes = bytes(64)
    measurement: bytes = bytes(48)
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = bytes(32)
    report_id_ma: bytes = b"\xff" * 32
    reported_tcb: TcbVersion = field(default_factory=TcbVersion)
    cpuid: bytes = bytes(3)
    chip_id: bytes = bytes(64)
    committed_tcb: TcbVersion = field(default_factory=TcbVersion)
    current_version: bytes = bytes(4)
    committed_version: bytes = bytes(4)
    launch_tcb: TcbVersion = field(default_factory=TcbVersion)
    signature_r: int = 0
    signature_s: int = 0
    raw: bytes = field(default=b"", compare=False, repr=False)

    # -- policy bits -------------------------------------------------------------------------------
    @property
    def is_debuggable(self) -> bool:
        return bool(self.policy >> POLICY_DEBUG_BIT & 1)

    @property
    def migration_allowed(self) -> bool:
        return bool(self.policy >> POLICY_MIGRATE_MA_BIT & 1)

    @property
    def smt_allowed(self) -> bool:
        return bool(self.policy >> POLICY_SMT_BIT & 1)

    @property
    def chip_id_masked(self) -> bool:
        """FLAGS.MASK_CHIP_ID: the firmware wrote zeros instead of the chip's identity."""
        return bool(self.flags >> 1 & 1)

    # -- parse / build -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes) -> SnpReport:
        """Parse a report. Raises AttestationError when it cannot be one (size, version, reserved bytes)."""
        if len(data) != REPORT_SIZE:
            raise AttestationError(f"SNP report is {len(data)} bytes, expected {REPORT_SIZE}")
        version, guest_svn, policy = struct.unpack_from("<IIQ", data, _VERSION)
        if version not in SUPPORTED_VERSIONS:
            raise AttestationError(f"unsupported SNP report version {version}")
        vmpl, sig_algo = struct.unpack_from("<II", data, _VMPL)
        platform_info, flags = struct.unpack_from("<QI", data, _PLATFORM_INFO)
        sig = data[SIGNED_SIZE:]
        if any(sig[2 * SIGNATURE_COMPONENT_SIZE:]):
            raise AttestationError("SNP report signature area has non-zero reserved bytes")

        def tcb(offset: int) -> TcbVersion:
            return TcbVersion.from_bytes(data[offset:offset + 8])

        return cls(
            version=version, guest_svn=guest_svn, policy=policy,
            family_id=data[_FAMILY_ID:_FAMILY_ID + 16], image_id=data[_IMAGE_ID:_IMAGE_ID + 16],
            vmpl=vmpl, signature_algo=sig_algo, current_tcb=tcb(_CURRENT_TCB),
            platform_info=platform_info, flags=flags,
            report_data=data[_REPORT_DATA:_REPORT_DATA + 64],
            measurement=data[_MEASUREMENT:_MEASUREMENT + 48],
            host_data=data[_HOST_DATA:_HOST_DATA + 32],
            id_key_digest=data[_ID_KEY_DIGEST:_ID_KEY_DIGEST + 48],
            author_key_digest=data[_AUTHOR_KEY_DIGEST:_AUTHOR_KEY_DIGEST + 48],
            report_id=data[_REPORT_ID:_REPORT_ID + 32], report_id_ma=data[_REPORT_ID_MA:_REPORT_ID_MA + 32],
            reported_tcb=tcb(_REPORTED_TCB), cpuid=data[_CPUID:_CPUID + 3],
            chip_id=data[_CHIP_ID:_CHIP_ID + 64], committed_tcb=tcb(_COMMITTED_TCB),
            current_version=data[_CURRENT_VERSION:_CURRENT_VERSION + 4],
            committed_version=data[_COMMITTED_VERSION:_COMMITTED_VERSION + 4],
            launch_tcb=tcb(_LAUNCH_TCB),
            signature_r=int.from_bytes(sig[:SIGNATURE_COMPONENT_SIZE], "little"),
            signature_s=int.from_bytes(sig[SIGNATURE_COMPONENT_SIZE:2 * SIGNATURE_COMPONENT_SIZE], "little"),
            raw=bytes(data),
        )

    def signed_bytes(self) -> bytes:
        """Bytes 0..0x29F: what the signature covers. From `raw` when parsed, so nothing is re-encoded."""
        if self.raw:
            return self.raw[:SIGNED_SIZE]
        _check_sizes(self)
        out = bytearray(SIGNED_SIZE)
        struct.pack_into("<IIQ", out, _VERSION, self.version, self.guest_svn, self.policy)
        out[_FAMILY_ID:_FAMILY_ID + 16] = self.family_id
        out[_IMAGE_ID:_IMAGE_ID + 16] = self.image_id
        struct.pack_into("<II", out, _VMPL, self.vmpl, self.signature_algo)
        out[_CURRENT_TCB:_CURRENT_TCB + 8] = self.current_tcb.to_bytes()
        struct.pack_into("<QI", out, _PLATFORM_INFO, self.platform_info, self.flags)
        out[_REPORT_DATA:_REPORT_DATA + 64] = self.report_data
        out[_MEASUREMENT:_MEASUREMENT + 48] = self.measurement
        out[_HOST_DATA:_HOST_DATA + 32] = self.host_data
        out[_ID_KEY_DIGEST:_ID_KEY_DIGEST + 48] = self.id_key_digest
        out[_AUTHOR_KEY_DIGEST:_AUTHOR_KEY_DIGEST + 48] = self.author_key_digest
        out[_REPORT_ID:_REPORT_ID + 32] = self.report_id
        out[_REPORT_ID_MA:_REPORT_ID_MA + 32] = self.report_id_ma
        out[_REPORTED_TCB:_REPORTED_TCB + 8] = self.reported_tcb.to_bytes()
        out[_CPUID:_CPUID + 3] = self.cpuid
        out[_CHIP_ID:_CHIP_ID + 64] = self.chip_id
        out[_COMMITTED_TCB:_COMMITTED_TCB + 8] = self.committed_tcb.to_bytes()
        out[_CURRENT_VERSION:_CURRENT_VERSION + 4] = self.current_version
        out[_COMMITTED_VERSION:_COMMITTED_VERSION + 4] = self.committed_version
        out[_LAUNCH_TCB:_LAUNCH_TCB + 8] = self.launch_tcb.to_bytes()
        return bytes(out)

    def to_bytes(self) -> bytes:
        """The 1184-byte report: the signed part, then R and S (72 bytes little-endian each), then zeros."""
        if self.raw:
            return self.raw
        signature = (self.signature_r.to_bytes(SIGNATURE_COMPONENT_SIZE, "little")
                     + self.signature_s.to_bytes(SIGNATURE_COMPONENT_SIZE, "little"))
        return self.signed_bytes() + signature.ljust(SIGNATURE_AREA_SIZE, b"\0")

    def with_signature(self, r: int, s: int) -> SnpReport:
        return replace(self, signature_r=r, signature_s=s, raw=b"")

    def with_fields(self, **changes) -> SnpReport:
        """A copy with fields changed and the signature cleared (it no longer covers the contents)."""
        return replace(self, **changes, signature_r=0, signature_s=0, raw=b"")


_SIZES = {"family_id": 16, "image_id": 16, "report_data": 64, "measurement": 48, "host_data": 32,
          "id_key_digest": 48, "author_key_digest": 48, "report_id": 32, "report_id_ma": 32, "cpuid": 3,
          "chip_id": 64, "current_version": 4, "committed_version": 4}


def _check_sizes(report: SnpReport) -> None:
    for name, size in _SIZES.items():
        value = getattr(report, name)
        if len(value) != size:
            raise ValueError(f"SnpReport.{name} must be {size} bytes, got {len(value)}")
