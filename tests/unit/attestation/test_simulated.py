"""The simulator's SEV-SNP report source: a report over its socket verifies against the mock platform,
binds the caller's REPORT_DATA and the group's HOST_DATA, and a wrong request gets no report."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from sidecars.aci.platform import write_security_context
from sidecars.attestation import AttestationError, MockSnpProvider, SnpReport, verify_evidence
from sidecars.attestation.simulated import SOCKET_NAME, ReportServer, SimulatedSnpProvider, simulated_socket


@pytest.fixture
def context_dir(tmp_path: Path, mock_platform) -> Path:
    """A security-context directory as the simulator lays it out (its socket path must stay short)."""
    directory = Path(f"/tmp/ccr-simctx-{tmp_path.name[-12:]}")
    directory.mkdir(exist_ok=True)
    write_security_context(directory, mock_platform, base64.b64encode(b"package policy").decode())
    yield directory
    for file in directory.iterdir():
        file.unlink()
    directory.rmdir()


@pytest.fixture
def server(context_dir: Path, mock_platform):
    host_data = bytes.fromhex("ab" * 32)
    srv = ReportServer(context_dir / SOCKET_NAME, MockSnpProvider(mock_platform, host_data=host_data))
    srv.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_report_from_the_socket_verifies_and_binds_report_data_and_host_data(server, context_dir, mock_trust):
    assert simulated_socket(str(context_dir)) == context_dir / SOCKET_NAME
    provider = SimulatedSnpProvider(security_context_dir=str(context_dir))
    evidence = provider.get_evidence(b"\x07" * 64)
    report = SnpReport.parse(evidence.report)
    assert report.report_data == b"\x07" * 64
    assert report.host_data == bytes.fromhex("ab" * 32)
    claims = verify_evidence(evidence, mock_trust)
    assert claims["x-ms-sevsnpvm-hostdata"] == "ab" * 32
    assert provider.platform == "simulated"


def test_no_socket_no_report(tmp_path):
    assert simulated_socket(str(tmp_path)) is None
    with pytest.raises(AttestationError, match=SOCKET_NAME):
        SimulatedSnpProvider(security_context_dir=str(tmp_path)).get_evidence(b"")


def test_a_short_request_gets_no_report(server, context_dir):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(context_dir / SOCKET_NAME))
        sock.sendall(b"short")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""


def test_report_data_over_64_bytes_is_refused(server, context_dir):
    with pytest.raises(AttestationError, match="at most 64"):
        SimulatedSnpProvider(security_context_dir=str(context_dir)).get_evidence(b"x" * 65)
