"""SEV-SNP attestation: the report, where evidence comes from, and verification as Azure Attestation does it.

Public API:
- `SnpReport.parse(bytes)` / `.to_bytes()`: the 1184-byte report and its fields (`TcbVersion` for TCBs).
- `Evidence(report, vcek_chain_pem, uvm_endorsement)`: with `from_caci/to_caci` (C-ACI capture shape),
  `from_combined/to_combined` (skr /attest/combined and CGS shape), `MaaRequest` for the MAA body;
  `load_evidence_file(path)` recognises all three.
- Providers with `get_evidence(report_data) -> Evidence`: `RealSnpProvider` (/dev/sev-guest) and
  `MockSnpProvider(MockPlatform.load(dir), host_data=..., measurement=..., debug=...)`.
- `MockPlatform.create(dir)` / `.load(dir)`: the mock AMD chain and mock UVM signer.
- `verify_evidence(evidence, trust=None) -> claims`: MAA's flat claims (`x-ms-sevsnpvm-hostdata`,
  `x-ms-sevsnpvm-is-debuggable`, `x-ms-compliance-status`, ...); raises AttestationError naming the reason.
  `Trust.default()` pins AMD's ARK-Milan and ARK-Genoa and Microsoft's UVM signer;
  `Trust.default().trusting_mock_platform(dir)` adds a mock platform.
- `maa_client.attest_sev_snp(maa_endpoint, evidence, runtime_data)` → an MAA token (see that module).
"""

from ..common.errors import AttestationError
from .evidence import Evidence, MaaRequest, load_evidence_document, load_evidence_file
from .mock import MockPlatform
from .providers import MockSnpProvider, RealSnpProvider, SnpProvider
from .report import REPORT_SIZE, SnpReport, TcbVersion
from .verify import Trust, verify_evidence

__all__ = [
    "REPORT_SIZE", "AttestationError", "Evidence", "MaaRequest", "MockPlatform", "MockSnpProvider",
    "RealSnpProvider", "SnpProvider", "SnpReport", "TcbVersion", "Trust", "load_evidence_document",
    "load_evidence_file", "verify_evidence",
]
