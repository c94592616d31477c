"""What the Confidential ACI platform gives a container besides the template's settings: the
security-context directory and (for privileged containers, which could open /dev/sev-guest on C-ACI) the
simulated SEV-SNP report source.

hcsshim's GCS (internal/guest/runtime/hcsv2/uvm.go, `createContainer`) writes `security-policy-base64`
(the group's ccePolicy as given), `reference-info-base64` (the UVM endorsement) and `host-amd-cert-base64`
(the host's VCEK chain as THIM JSON) into a directory `/security-context-*` of the container's root file
system, and appends `UVM_SECURITY_CONTEXT_DIR=/security-context-*` to the process environment *after*
`EnforceCreateContainerPolicy` has decided: the policy never sees that variable. The simulator does the
same: the files come from the mock platform it uses as hardware (the stand-ins' one, so their MAA can
verify its reports, as Azure Attestation verifies real hardware).
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

from ..attestation.mock import DEFAULT_MEASUREMENT, MockPlatform
from ..attestation.providers import SECURITY_CONTEXT_ENV, MockSnpProvider
from ..attestation.simulated import SOCKET_NAME
from ..common.errors import ConfigError

POLICY_FILE = "security-policy-base64"
REFERENCE_INFO_FILE = "reference-info-base64"
HOST_AMD_CERT_FILE = "host-amd-cert-base64"
#: sockaddr_un.sun_path holds 108 bytes, the last a NUL
MAX_SOCKET_PATH = 107

__all__ = ["SECURITY_CONTEXT_ENV", "context_mount_point", "provider", "socket_path", "write_security_context"]


def context_mount_point() -> str:
    """Like the GCS's os.MkdirTemp(rootfs, "security-context-*"): a fresh name per group."""
    return f"/security-context-{secrets.token_hex(4)}"


def socket_path(directory: Path) -> Path:
    path = directory / SOCKET_NAME
    if len(str(path)) > MAX_SOCKET_PATH:
        raise ConfigError(f"the simulator's SEV-SNP socket path {path} is longer than a Unix socket allows "
                          f"({MAX_SOCKET_PATH}): use a shorter --state-dir")
    return path


def provider(platform: MockPlatform, host_data_hex: str) -> MockSnpProvider:
    return MockSnpProvider(platform, host_data=bytes.fromhex(host_data_hex))


def write_security_context(directory: Path, platform: MockPlatform, cce_policy_base64: str) -> None:
    """The three files, as the GCS lays them out (each the base64 of the content)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    chain = platform.vcek_chain_pem.decode()
    vcek, _, rest = chain.partition("-----END CERTIFICATE-----\n")
    certs = {"vcekCert": vcek + "-----END CERTIFICATE-----\n", "certificateChain": rest,
             "tcbm": platform.reported_tcb.to_bytes().hex()}
    endorsement = platform.endorse_uvm(bytes.fromhex(DEFAULT_MEASUREMENT))
    files = {POLICY_FILE: cce_policy_base64,
             HOST_AMD_CERT_FILE: base64.b64encode(json.dumps(certs).encode()).decode(),
             REFERENCE_INFO_FILE: base64.b64encode(endorsement).decode()}
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o744)
