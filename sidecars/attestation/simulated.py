"""The SEV-SNP report source of `ccr aci run`, the local Confidential ACI simulator.

A real C-ACI guest asks the PSP for a report through /dev/sev-guest. The simulator has no PSP, so it serves
reports on a Unix socket it places in the security-context directory it gives each privileged container
(beside `host-amd-cert-base64`, `reference-info-base64` and `security-policy-base64`, as the real platform
lays them out). The reports are signed by the mock platform's VCEK and carry HOST_DATA = sha256 of the
template's own `ccePolicy`, so editing the policy changes what attests, as on hardware. A room reading this
socket is on the simulator and says so: `SimulatedSnpProvider.platform` is "simulated", and its evidence
chains to the mock AMD root, which Azure Attestation never accepts.

The protocol is one request per connection: the client sends the 64 bytes of REPORT_DATA, the server
answers the 1184-byte report (or closes without one after logging why).
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import AttestationError
from .evidence import Evidence
from .providers import REPORT_DATA_SIZE, SECURITY_CONTEXT_ENV, MockSnpProvider, RealSnpProvider
from .report import REPORT_SIZE

log = logging.getLogger("ccr.attestation.simulated")

#: the socket's name in the security-context directory; its presence is what marks a simulated platform
SOCKET_NAME = "ccr-simulated-sev-guest.sock"
TIMEOUT_S = 10.0


def simulated_socket(security_context_dir: str | None = None) -> Path | None:
    """The simulator's report socket, if this container was given one."""
    directory = security_context_dir or os.environ.get(SECURITY_CONTEXT_ENV)
    if not directory:
        return None
    path = Path(directory) / SOCKET_NAME
    return path if path.exists() else None


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def request_report(path: Path, report_data: bytes) -> bytes:
    """One report from the simulator's socket at `path`, with `report_data` (at most 64 bytes) bound in."""
    if len(report_data) > REPORT_DATA_SIZE:
        raise AttestationError(f"REPORT_DATA holds at most {REPORT_DATA_SIZE} bytes, got {len(report_data)}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.connect(str(path))
            sock.sendall(report_data.ljust(REPORT_DATA_SIZE, b"\0"))
            report = _read_exactly(sock, REPORT_SIZE)
    except OSError as exc:
        raise AttestationError(f"the simulator's SEV-SNP socket {path}: {exc.strerror or exc}") from None
    if len(report) != REPORT_SIZE:
        raise AttestationError(f"the simulator's SEV-SNP socket {path} answered {len(report)} bytes, "
                               f"expected a {REPORT_SIZE}-byte report")
    return report


@dataclass
class SimulatedSnpProvider(RealSnpProvider):
    """Evidence as on C-ACI (VCEK chain and UVM endorsement from the security-context directory), with the
    report from the simulator's socket instead of /dev/sev-guest."""

    socket_path: Path | None = None
    platform: str = field(default="simulated", init=False)
    platform_kind: str = field(default="simulated", init=False)

    def get_evidence(self, report_data: bytes) -> Evidence:
        path = self.socket_path or simulated_socket(self.security_context_dir)
        if path is None:
            raise AttestationError(f"no simulator SEV-SNP socket ({SOCKET_NAME}) in {SECURITY_CONTEXT_ENV}")
        return Evidence(report=request_report(path, report_data), vcek_chain_pem=self.vcek_chain_pem(),
                        uvm_endorsement=self._context_file("reference-info-base64"))


class _Handler(socketserver.BaseRequestHandler):
    server: ReportServer

    def handle(self) -> None:
        self.request.settimeout(TIMEOUT_S)
        try:
            report_data = _read_exactly(self.request, REPORT_DATA_SIZE)
            if len(report_data) != REPORT_DATA_SIZE:
                log.warning("report request of %d bytes refused (expected %d)", len(report_data), REPORT_DATA_SIZE)
                return
            self.request.sendall(self.server.provider.sign(self.server.provider.build_report(report_data)))
        except OSError as exc:
            log.warning("report request failed: %s", exc)


class ReportServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves reports of `provider` (the mock platform, with the group's HOST_DATA) on `path`."""

    daemon_threads = True

    def __init__(self, path: Path, provider: MockSnpProvider):
        self.provider = provider
        path.unlink(missing_ok=True)
        super().__init__(str(path), _Handler)
        # Only the containers the simulator gives this directory reach it; inside them, only root.
        path.chmod(0o600)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="simulated-sev-guest", daemon=True)
        thread.start()
        return thread
