"""Attestation costs on the path of every key release: verifying evidence, making mock evidence, and a
full MAA round trip (HTTPS to the stand-in, verification, token signing).

Baseline measured in the same run: one bare ECDSA P-384 signature check, the floor of any verification.
"""

from __future__ import annotations

import json
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from sidecars.attestation import MaaRequest, MockPlatform, MockSnpProvider, SnpReport, Trust, verify_evidence
from sidecars.attestation.amd import _verified_chain, verify_report_signature, verify_vcek_chain
from sidecars.attestation.evidence import load_evidence_file
from sidecars.attestation.maa_client import maa_url, report_data_for
from sidecars.attestation.uvm import verify_uvm_endorsement
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA

VECTORS = next(p / "shared" / "testvectors" / "caci-snp-allow-all" for p in Path(__file__).resolve().parents
               if (p / "shared" / "testvectors").is_dir())


def _median_ms(step: Callable[[], object], runs: int = 200) -> float:
    step()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def run() -> dict[str, float]:
    evidence, _ = load_evidence_file(VECTORS / "attestation.json")
    trust = Trust.default()
    report = SnpReport.parse(evidence.report)
    chain = verify_vcek_chain(evidence.vcek_chain_pem, trust.amd_roots)

    key = ec.generate_private_key(ec.SECP384R1())
    signature = key.sign(b"x" * 672, ec.ECDSA(hashes.SHA384()))
    baseline = _median_ms(lambda: key.public_key().verify(signature, b"x" * 672, ec.ECDSA(hashes.SHA384())))
    steps = {
        "parse report": _median_ms(lambda: SnpReport.parse(evidence.report)),
        "VCEK chain (first time)": _median_ms(lambda: _verified_chain.__wrapped__(evidence.vcek_chain_pem,
                                                                                   trust.amd_roots)),
        "VCEK chain (remembered)": _median_ms(lambda: verify_vcek_chain(evidence.vcek_chain_pem, trust.amd_roots)),
        "report signature": _median_ms(lambda: verify_report_signature(report, chain.vcek)),
        "UVM endorsement (first time)": _median_ms(lambda: verify_uvm_endorsement.__wrapped__(
            evidence.uvm_endorsement, trust.uvm_endorsers)),
    }
    verify_ms = _median_ms(lambda: verify_evidence(evidence, trust))
    print(f"   baseline: one ECDSA P-384 verify {baseline:.3f} ms")
    for name, ms in steps.items():
        print(f"   {name:30s} {ms:7.3f} ms")
    print(f"   verify_evidence (real C-ACI evidence) {verify_ms:.3f} ms = {verify_ms / baseline:.1f}x baseline")

    with tempfile.TemporaryDirectory(prefix="ccr-bench-attestation-") as tmp:
        platform = MockPlatform.create(Path(tmp) / "platform")
        provider = MockSnpProvider(platform)
        runtime = b'{"keys": []}'
        mock_ms = _median_ms(lambda: provider.get_evidence(report_data_for(runtime)))
        print(f"   mock evidence (sign a report) {mock_ms:.3f} ms")
        request = MaaRequest.from_body(json.loads((VECTORS / "maa-request.json").read_text()))
        maa_ms = _maa_round_trip(Path(tmp), request)
        print(f"   MAA round trip (HTTPS, verify, sign token) {maa_ms:.3f} ms "
              f"= {maa_ms / verify_ms:.1f}x verify_evidence")
    return {"attestation_verify_ms": round(verify_ms, 3), "attestation_mock_evidence_ms": round(mock_ms, 3),
            "maa_attest_ms": round(maa_ms, 3)}


def _maa_round_trip(tmp: Path, request: MaaRequest) -> float:
    ca = LocalCA.create(tmp / "ca")
    tls = ca.issue_server_cert("maa", directory=tmp / "maa")
    ready = tmp / "maa" / "ready.json"
    proc = ManagedProcess("maa", [sys.executable, "-m", "sidecars.emulators.maa", "--port", "0", "--cert",
                                  tls.cert_file, "--key", tls.key_file, "--ready-file", str(ready)],
                          ready=file_exists(ready), ready_timeout=60, log_path=tmp / "maa" / "maa.log")
    body = request.to_body()
    with proc, httpx.Client(verify=ssl.create_default_context(cafile=str(ca.cert_file))) as client:
        url = maa_url(json.loads(ready.read_text())["url"])

        def attest() -> None:
            client.post(url, json=body).raise_for_status()

        return _median_ms(attest, runs=100)
