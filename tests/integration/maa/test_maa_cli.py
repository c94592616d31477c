"""Starting the MAA stand-in wrongly ends in one line naming the problem and exit 1."""

from __future__ import annotations

import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sidecars.emulators.maa", *args], capture_output=True, text=True,
                          timeout=60)


def test_untrusted_mock_platform_directory(tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    result = _run("--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem"),
                  "--trust-mock-platform", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"maa: error: {tmp_path / 'absent'}: not a mock platform directory (no platform.json; "
        "create one with `ccr attestation mock-platform -o DIR`)"]


def test_missing_certificate(tmp_path):
    result = _run("--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"maa: error: {tmp_path / 'cert.pem'}: no such file"


def test_help_explains():
    result = _run("--help")
    assert result.returncode == 0
    assert "--trust-mock-platform" in result.stdout and "SevSnpVm" in result.stdout
