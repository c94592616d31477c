"""A real Confidential ACI security-context directory, made from evidence captured on real hardware (the
test vectors), parses: the files are laid out as C-ACI writes them under UVM_SECURITY_CONTEXT_DIR, and the
readers skr uses on C-ACI get the VCEK chain (which verifies to AMD's ARK-Milan), the UVM endorsement (which
endorses the report's MEASUREMENT) and the CCE policy (whose hash is the report's HOST_DATA)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from sidecars.attestation import AttestationError, Evidence, RealSnpProvider, SnpReport, verify_evidence
from sidecars.attestation.amd import amd_roots, verify_vcek_chain
from sidecars.attestation.uvm import MICROSOFT_UVM_DID, MICROSOFT_UVM_FEED, UvmEndorser, verify_uvm_endorsement

HOST_DATA = "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20"
MEASUREMENT = "d0c9e2be22046e60779be88868cff64c2aa22047c15d3127ba495cee3fbc2854c5633f9da2096e6c64ae2b69bbff8082"
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.DOTALL)


@pytest.fixture(scope="module")
def captured(testvectors: Path) -> dict:
    snp = json.loads((testvectors / "caci-snp-allow-all/attestation.json").read_text())["report"]["snpCACI"]
    values = dict(line.split(": ", 1) for line in
                  (testvectors / "caci-snp-allow-all/values.txt").read_text().splitlines() if ": " in line)
    return {**snp, **values}


@pytest.fixture(scope="module")
def context_dir(captured: dict, tmp_path_factory) -> Path:
    """The directory as C-ACI lays it out: each file one line of base64."""
    directory = tmp_path_factory.mktemp("security-context")
    vcek, *chain = _PEM.findall(base64.b64decode(captured["platformCertificates"]).decode())
    report = SnpReport.parse(base64.b64decode(captured["attestation"]))
    tcbm = int.from_bytes(report.reported_tcb.to_bytes(), "little")
    amd_cert = {"vcekCert": vcek, "certificateChain": "".join(chain), "tcbm": f"{tcbm:016X}"}
    (directory / "host-amd-cert-base64").write_text(base64.b64encode(json.dumps(amd_cert).encode()).decode())
    (directory / "reference-info-base64").write_text(captured["uvmEndorsements"])
    (directory / "security-policy-base64").write_text(captured["ccepolicy"].strip())
    return directory


def test_the_vcek_chain_verifies_to_ark_milan(context_dir):
    provider = RealSnpProvider(security_context_dir=str(context_dir))
    chain = verify_vcek_chain(provider.vcek_chain_pem(), amd_roots())
    # the pinned AMD root, not the chain's own copy taken on trust
    assert chain.ark.subject.rfc4514_string().startswith("CN=ARK-Milan,") and chain.ark in amd_roots()
    assert chain.vcek.subject.rfc4514_string().startswith("CN=SEV-VCEK,")


def test_the_uvm_endorsement_is_microsofts_and_endorses_the_measurement(context_dir):
    endorsement = verify_uvm_endorsement(RealSnpProvider(security_context_dir=str(context_dir)).uvm_endorsement(),
                                         (UvmEndorser(MICROSOFT_UVM_DID, MICROSOFT_UVM_FEED),))
    assert endorsement.launch_measurement == MEASUREMENT


def test_the_security_policy_hashes_to_host_data(context_dir):
    provider = RealSnpProvider(security_context_dir=str(context_dir))
    assert provider.security_policy_hash() == HOST_DATA
    assert provider.security_policy().startswith("package policy")


def test_evidence_assembled_from_the_directory_verifies_as_maa_would(context_dir, captured):
    """What skr sends on C-ACI: the hardware's report plus the directory's chain and endorsement."""
    provider = RealSnpProvider(security_context_dir=str(context_dir))
    evidence = Evidence(report=base64.b64decode(captured["attestation"]), vcek_chain_pem=provider.vcek_chain_pem(),
                        uvm_endorsement=provider.uvm_endorsement())
    claims = verify_evidence(evidence)
    assert claims["x-ms-sevsnpvm-hostdata"] == HOST_DATA == provider.security_policy_hash()
    assert claims["x-ms-compliance-status"] == "azure-compliant-uvm"


@pytest.mark.parametrize("name, content, problem", [
    ("host-amd-cert-base64", "not base64!", "host-amd-cert-base64: not base64"),
    ("host-amd-cert-base64", base64.b64encode(b'{"vcekCert": 1}').decode(), "expected JSON {vcekCert"),
    ("security-policy-base64", base64.b64encode(b"\xff\xfe").decode(), "the policy is not UTF-8 text"),
])
def test_a_damaged_directory_is_one_line(context_dir, tmp_path, name, content, problem):
    damaged = tmp_path / "ctx"
    damaged.mkdir()
    for file in context_dir.iterdir():
        (damaged / file.name).write_text(file.read_text())
    (damaged / name).write_text(content)
    provider = RealSnpProvider(security_context_dir=str(damaged))
    with pytest.raises(AttestationError, match=problem):
        provider.vcek_chain_pem() if name == "host-amd-cert-base64" else provider.security_policy()
