"""What `ccr room up` runs for a spec: the container group's sidecars, each as a process.

Every sidecar container of the group (`sidecars.room.group`) becomes one process running the container's
own command (`ccr sidecar run NAME`) with the container's own environment (`CCR_SIDECAR`, `CCR_SPEC`), plus
the room's placement (`sidecars.common.room`: run directory, mount root, netns, the stand-ins'
endpoints.json and the HOST_DATA their mock platform reports). So a sidecar configures itself exactly as
in a container. Each listens on its registry port inside the room's own network namespace (rooms never
clash), so the app reaches skr, governance and the others at the same localhost ports as in the group.
The stand-ins are reached at their endpoints.json URLs through the loopback forwarders.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..common.containers import Container
from ..common.room import Placement
from ..common.sidecar import Sidecar
from ..room.group import ContainerGroup
from ..room.registry import REGISTRY
from ..spec import CleanRoomSpec

#: The stand-ins the sidecars call, by their endpoints.json keys: forwarded into the room.
STAND_IN_ENDPOINTS = ("maa_endpoint", "keyvault_url", "cgs_endpoint", "entra_endpoint", "storage_url", "s3_endpoint")


@dataclass(frozen=True)
class SidecarProcess:
    sidecar: Sidecar
    argv: tuple[str, ...]
    env: dict[str, str]


@dataclass(frozen=True)
class RoomPlan:
    spec: CleanRoomSpec
    group: ContainerGroup
    placement: Placement
    python: str = sys.executable

    @property
    def run_dir(self) -> Path:
        return self.placement.run_dir

    def log_file(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def forwarded_ports(self) -> list[int]:
        """The host loopback ports of the stand-ins the sidecars call."""
        endpoints = self.placement.emulation.endpoints if self.placement.emulation else {}
        ports = []
        for key in STAND_IN_ENDPOINTS:
            url = urlsplit(endpoints.get(key, ""))
            if url.hostname in ("127.0.0.1", "localhost") and url.port:
                ports.append(url.port)
        return sorted(set(ports))

    def process(self, sidecar: Sidecar) -> SidecarProcess:
        """The sidecar's container as a process of this checkout: its command (`ccr` is this Python's
        `-m sidecars`), its environment and the room's placement."""
        container: Container = self.group.container(f"ccr-{sidecar.name}")
        program, *args = container.command
        if program != "ccr":
            raise ValueError(f"{container.name}: a sidecar container runs `ccr`, not {program!r}")
        return SidecarProcess(sidecar, (self.python, "-m", "sidecars", *args),
                              {**container.env_dict, **self.placement.to_environment()})

    def waves(self) -> list[tuple[Sidecar, ...]]:
        return REGISTRY.waves()
