"""`ccr attestation verify` and `ccr attestation mock-platform` as a party runs them."""

from __future__ import annotations

import json

from sidecars.attestation import MockSnpProvider
from sidecars.cli import main


def test_verify_prints_the_claims(caci_dir, capsys):
    assert main(["attestation", "verify", str(caci_dir / "attestation.json")]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert claims["x-ms-sevsnpvm-hostdata"] == "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20"
    assert claims["x-ms-compliance-status"] == "azure-compliant-uvm"


def test_verify_of_an_maa_body_shows_the_runtime_claims(caci_dir, capsys):
    assert main(["attestation", "verify", str(caci_dir / "maa-request.json")]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert claims["x-ms-runtime"]["keys"][0]["kty"] == "RSA"


def test_tampered_evidence_is_one_line_and_exit_1(real_evidence, tmp_path, capsys):
    caci = real_evidence.to_caci()
    import base64

    report = bytearray(real_evidence.report)
    report[0xC0] ^= 1
    caci["report"]["snpCACI"]["attestation"] = base64.b64encode(bytes(report)).decode()
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(caci))
    assert main(["attestation", "verify", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("ccr: error: bad report signature")


def test_mock_evidence_needs_the_trust_option(mock_platform, tmp_path, capsys):
    path = tmp_path / "combined.json"
    path.write_text(json.dumps(MockSnpProvider(mock_platform).get_evidence(b"").to_combined()))
    assert main(["attestation", "verify", str(path)]) == 1
    assert "unknown certificate chain" in capsys.readouterr().err
    assert main(["attestation", "verify", "--trust-mock-platform", str(mock_platform.directory), str(path)]) == 0
    # the mock's UVM is endorsed by the mock's signer, never Microsoft's: never azure-compliant-uvm
    assert json.loads(capsys.readouterr().out)["x-ms-compliance-status"] == "ccr-mock-uvm"


def test_missing_file(tmp_path, capsys):
    assert main(["attestation", "verify", str(tmp_path / "nope.json")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_mock_platform_command_reuses(mock_platform, capsys):
    assert main(["attestation", "mock-platform", "-o", str(mock_platform.directory)]) == 0
    assert capsys.readouterr().out.startswith("reused mock SEV-SNP platform")


def test_mock_evidence_bound_to_runtime_data_verifies_as_an_maa_body(mock_platform, caci_dir, tmp_path, capsys):
    host_data = "cd" * 32
    assert main(["attestation", "mock-evidence", str(mock_platform.directory), "--host-data", host_data,
                 "--runtime-data", str(caci_dir / "public-key-jwks"), "--format", "maa", "--debug"]) == 0
    path = tmp_path / "maa.json"
    path.write_text(capsys.readouterr().out)
    assert main(["attestation", "verify", str(path)]) == 1
    assert "--trust-mock-platform" in capsys.readouterr().err
    assert main(["attestation", "verify", "--trust-mock-platform", str(mock_platform.directory), str(path)]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert claims["x-ms-sevsnpvm-hostdata"] == host_data
    assert claims["x-ms-sevsnpvm-is-debuggable"] is True
    assert claims["x-ms-runtime"] == json.loads((caci_dir / "public-key-jwks").read_text())


def test_mock_evidence_argument_mistakes(mock_platform, capsys):
    assert main(["attestation", "mock-evidence", str(mock_platform.directory), "--host-data", "abcd"]) == 1
    assert capsys.readouterr().err.strip() == "ccr: error: --host-data: expected 32 bytes (64 hex digits), got 2"
    assert main(["attestation", "mock-evidence", str(mock_platform.directory), "--format", "maa"]) == 1
    assert "needs --runtime-data" in capsys.readouterr().err
