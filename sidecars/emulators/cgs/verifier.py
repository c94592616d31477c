"""How the CGS stand-in verifies a room's evidence: with the attestation library, as the real CGS verifies
SNP evidence itself (no MAA in between). The mock SEV-SNP platform's roots are trusted only when the
stand-in is started with `--trust-mock-platform DIR`. Evidence without a verified UVM endorsement is
refused, as the real CGS refuses it; with a trusted mock platform, a UVM its signer endorsed
(`x-ms-compliance-status: ccr-mock-uvm`) counts as endorsed here, and only here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...attestation import AttestationError, Evidence, Trust, verify_evidence
from ...attestation.verify import COMPLIANT_UVM, MOCK_UVM
from .room import AttestationVerifier


def attestation_verifier(mock_platform_dir: str | Path | None) -> AttestationVerifier:
    trust = Trust.default().trusting_mock_platform(mock_platform_dir) if mock_platform_dir else Trust.default()
    endorsed = {COMPLIANT_UVM, MOCK_UVM} if mock_platform_dir else {COMPLIANT_UVM}

    def verify(attestation: dict[str, Any]) -> dict[str, Any]:
        claims = verify_evidence(Evidence.from_combined(attestation), trust=trust)
        # As the real CGS: the UVM must be endorsed (uvm_endorsements verified and matching MEASUREMENT).
        if claims.get("x-ms-compliance-status") not in endorsed:
            raise AttestationError("the UVM is not endorsed: uvm_endorsements missing, so MEASUREMENT is unproven")
        return claims

    return verify
