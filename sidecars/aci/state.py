"""Where a simulated container group keeps its state, and the names of what it creates on the host.

One directory per group (default /run/ccr-aci/NAME, or `--state-dir`): `state.json` (what exists, so
`status` and `delete` find it), the emptyDir volumes, the two security-context directories, the
simulator's log. The podman pod, its containers and the network namespace are named after the group,
so two groups never share one; everything the simulator makes carries the label `ccr-aci=NAME`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..common.errors import ConfigError, NotFound
from ..common.process import ProcessRecord

DEFAULT_ROOT = Path("/run/ccr-aci")
STATE_FILE = "state.json"
LABEL = "ccr-aci"
PLATFORM = "simulated"


def default_state_dir(name: str) -> Path:
    return DEFAULT_ROOT / name


@dataclass
class GroupState:
    name: str
    state_dir: str
    netns: str
    pod: str
    host_data: str
    template_sha256: str
    context_mount: str
    #: the group's address on its link to the host (what ACI's ipAddress.ip is for a public group)
    ip: str = ""
    init_containers: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    forwarded_ports: list[int] = field(default_factory=list)
    mock_platform_dir: str = ""
    governed: bool = True
    daemon: dict | None = None
    platform: str = PLATFORM

    @property
    def directory(self) -> Path:
        return Path(self.state_dir)

    def container_name(self, container: str) -> str:
        return f"{self.pod}-{container}"

    def volume_dir(self, volume: str) -> Path:
        return self.directory / "volumes" / volume

    @property
    def plain_context(self) -> Path:
        return self.directory / "ctx"

    @property
    def privileged_context(self) -> Path:
        # short: the SEV-SNP socket lives here and a Unix socket path holds 107 bytes
        return self.directory / "p"

    @property
    def daemon_record(self) -> ProcessRecord | None:
        return ProcessRecord(**self.daemon) if self.daemon else None

    @property
    def daemon_log(self) -> Path:
        return self.directory / "simulator.log"

    @property
    def daemon_ready(self) -> Path:
        return self.directory / "simulator.ready"

    def save(self) -> None:
        path = self.directory / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, state_dir: Path) -> GroupState:
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            raise NotFound(f"no simulated container group at {state_dir} (no {STATE_FILE}): `ccr aci run` "
                           "first, or pass the --state-dir it used") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: malformed ({exc})") from None
