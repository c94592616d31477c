"""Verify evidence the way Azure Attestation does for `SevSnpVm`, and name the result in MAA's claims.

1. the report parses (size, version, reserved signature bytes zero);
2. the VCEK chains to a pinned ARK (never the presented chain's own root);
3. the report's signature verifies with the VCEK, and the VCEK belongs to the report's chip and TCB;
4. the UVM endorsement, when present, verifies from a trusted (DID, feed) and endorses exactly the
   report's MEASUREMENT → `x-ms-compliance-status: azure-compliant-uvm` when Microsoft's UVM signer endorsed
   it; `ccr-mock-uvm` when a mock platform's signer did (trusted only where a verifier added a mock platform:
   the local stand-ins). Real Azure Attestation never issues `ccr-mock-uvm`, so a policy that accepts it for
   the stand-ins cannot let mock evidence through a real MAA.
Any failure raises AttestationError naming the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from ..common.errors import AttestationError, BadRequest
from .amd import amd_roots, check_vcek_matches_report, verify_report_signature, verify_vcek_chain
from .evidence import Evidence, MaaRequest
from .mock import MockPlatform
from .report import SnpReport
from .uvm import MICROSOFT_UVM_DID, MICROSOFT_UVM_FEED, UvmEndorser, verify_uvm_endorsement

ATTESTATION_TYPE = "sevsnpvm"
COMPLIANT_UVM = "azure-compliant-uvm"
MOCK_UVM = "ccr-mock-uvm"
MAA_VERSION = "1.0"


@dataclass(frozen=True)
class Trust:
    """What a verifier trusts: AMD roots (ARKs) and UVM endorsers. `Trust.default()` is what Azure trusts;
    a mock platform is added only explicitly, with `trusting_mock_platform`."""

    amd_roots: tuple[x509.Certificate, ...]
    uvm_endorsers: tuple[UvmEndorser, ...] = field(default=())

    @classmethod
    def default(cls) -> Trust:
        return cls(amd_roots=amd_roots(), uvm_endorsers=(UvmEndorser(MICROSOFT_UVM_DID, MICROSOFT_UVM_FEED),))

    def trusting_mock_platform(self, platform_dir: str | Path) -> Trust:
        """This trust plus the mock platform's ARK and UVM endorser (for local rooms only)."""

        platform = MockPlatform.load(platform_dir)
        return Trust(amd_roots=self.amd_roots + (platform.ark_cert,),
                     uvm_endorsers=self.uvm_endorsers + (platform.uvm_endorser,))


def report_claims(report: SnpReport) -> dict[str, Any]:
    """MAA's flat `x-ms-sevsnpvm-*` claims for a (verified) report, with MAA's types."""
    tcb = report.reported_tcb
    return {
        "x-ms-attestation-type": ATTESTATION_TYPE,
        "x-ms-sevsnpvm-authorkeydigest": report.author_key_digest.hex(),
        "x-ms-sevsnpvm-bootloader-svn": tcb.bootloader,
        "x-ms-sevsnpvm-familyId": report.family_id.hex(),
        "x-ms-sevsnpvm-guestsvn": report.guest_svn,
        "x-ms-sevsnpvm-hostdata": report.host_data.hex(),
        "x-ms-sevsnpvm-idkeydigest": report.id_key_digest.hex(),
        "x-ms-sevsnpvm-imageId": report.image_id.hex(),
        "x-ms-sevsnpvm-is-debuggable": report.is_debuggable,
        "x-ms-sevsnpvm-launchmeasurement": report.measurement.hex(),
        "x-ms-sevsnpvm-microcode-svn": tcb.microcode,
        "x-ms-sevsnpvm-migration-allowed": report.migration_allowed,
        "x-ms-sevsnpvm-reportdata": report.report_data.hex(),
        "x-ms-sevsnpvm-reportid": report.report_id.hex(),
        "x-ms-sevsnpvm-smt-allowed": report.smt_allowed,
        "x-ms-sevsnpvm-snpfw-svn": tcb.snp,
        "x-ms-sevsnpvm-tee-svn": tcb.tee,
        "x-ms-sevsnpvm-vmpl": report.vmpl,
        "x-ms-ver": MAA_VERSION,
    }


def verify_report(evidence: Evidence, trust: Trust | None = None, *, now: dt.datetime | None = None) -> SnpReport:
    """Steps 1-3: the report is genuine AMD hardware's. Returns the parsed report."""
    trust = trust or Trust.default()
    report = SnpReport.parse(evidence.report)
    chain = verify_vcek_chain(evidence.vcek_chain_pem, trust.amd_roots, now)
    verify_report_signature(report, chain.vcek)
    check_vcek_matches_report(chain.vcek, report)
    return report


def verify_evidence(evidence: Evidence, trust: Trust | None = None, *,
                    now: dt.datetime | None = None) -> dict[str, Any]:
    """Verify `evidence` and return MAA's flat claims. Raises AttestationError naming the reason."""
    trust = trust or Trust.default()
    report = verify_report(evidence, trust, now=now)
    claims = report_claims(report)
    if evidence.uvm_endorsement:
        endorsement = verify_uvm_endorsement(evidence.uvm_endorsement, trust.uvm_endorsers)
        if endorsement.launch_measurement != report.measurement.hex():
            raise AttestationError("UVM endorsement measurement mismatch: it endorses "
                                   f"{endorsement.launch_measurement}, the report's MEASUREMENT is "
                                   f"{report.measurement.hex()}")
        microsoft = UvmEndorser(endorsement.issuer, endorsement.feed) == UvmEndorser(MICROSOFT_UVM_DID,
                                                                                    MICROSOFT_UVM_FEED)
        claims["x-ms-compliance-status"] = COMPLIANT_UVM if microsoft else MOCK_UVM
    return dict(sorted(claims.items()))


def verify_maa_request(request: MaaRequest, trust: Trust | None = None, *,
                       now: dt.datetime | None = None) -> dict[str, Any]:
    """What MAA does with an `attest/SevSnpVm` body: verify the evidence, check that REPORT_DATA[0:32] =
    sha256(runtimeData) (and HOST_DATA = sha256(initTimeData) when given), and add the runtime claims."""
    claims = verify_evidence(request.evidence, trust, now=now)
    report_data = bytes.fromhex(claims["x-ms-sevsnpvm-reportdata"])
    if not hmac.compare_digest(report_data[:32], hashlib.sha256(request.runtime_data).digest()):
        raise AttestationError("runtime data binding mismatch: REPORT_DATA[0:32] is not sha256(runtimeData.data)")
    if request.init_time_data:
        host_data = bytes.fromhex(claims["x-ms-sevsnpvm-hostdata"])
        if not hmac.compare_digest(host_data, hashlib.sha256(request.init_time_data).digest()):
            raise AttestationError("init-time data binding mismatch: HOST_DATA is not sha256(initTimeData.data)")
        if request.init_time_data_type == "JSON":
            claims["x-ms-inittime"] = _json_claim(request.init_time_data, "initTimeData.data")
    if request.runtime_data_type == "JSON":
        claims["x-ms-runtime"] = _json_claim(request.runtime_data, "runtimeData.data")
    return dict(sorted(claims.items()))


def _json_claim(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise BadRequest(f"{what}: dataType is JSON but the data is not JSON") from None
