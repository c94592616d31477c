"""Every sidecar of a room, one entry each. Adding a sidecar: a folder with its code and its `Sidecar`
record (`sidecar.py`), and one line in `SIDECARS` below; every rendering, `ccr room up`, `ccr room status`,
`ccr room logs` and `ccr sidecar` pick it up from here.

The order of `SIDECARS` is the order of the containers in the group (and so in the CCE policy); the startup
order is each record's `wave`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import get_args

from ..common.errors import CcrError, ConfigError, SpecError
from ..common.room import Placement, Room, RoomLayout
from ..common.sidecar import Sidecar
from ..firewall.sidecar import FIREWALL
from ..governance.sidecar import GOVERNANCE
from ..identity.sidecar import IDENTITY
from ..launcher.sidecar import LAUNCHER
from ..proxy.sidecar import PROXY
from ..skr.sidecar import SKR
from ..spec import CleanRoomSpec, SidecarApi
from ..telemetry.sidecar import TELEMETRY
from ..volumes.sidecar import VOLUMES

SIDECARS: tuple[Sidecar, ...] = (FIREWALL, SKR, GOVERNANCE, IDENTITY, VOLUMES, PROXY, TELEMETRY, LAUNCHER)

_PORT_REFERENCE = re.compile(r"\{port:([a-z0-9-]+)\}")


class Registry:
    """The sidecars of a room, checked as a whole: unique names and ports, and exactly one sidecar behind
    each API the spec lets the app call (`application.sidecar_apis`)."""

    def __init__(self, sidecars: tuple[Sidecar, ...]):
        self._sidecars = self._checked(sidecars)

    @staticmethod
    def _checked(sidecars: tuple[Sidecar, ...]) -> tuple[Sidecar, ...]:
        names: set[str] = set()
        ports: dict[int, str] = {}
        for sidecar in sidecars:
            if sidecar.name in names:
                raise ValueError(f"two sidecars are named {sidecar.name}")
            names.add(sidecar.name)
            for port in sidecar.ports:
                if port.number in ports:
                    raise ValueError(f"port {port.number} of {sidecar.name} is also {ports[port.number]}'s")
                ports[port.number] = f"{sidecar.name}.{port.name}"
            sidecar.port(sidecar.status_port)
        with_api = {s.name for s in sidecars if s.app_api_ports}
        if with_api != set(get_args(SidecarApi)):
            raise ValueError(f"application.sidecar_apis names {sorted(get_args(SidecarApi))} but the sidecars "
                             f"serving the app are {sorted(with_api)}")
        return tuple(sidecars)

    def __iter__(self) -> Iterator[Sidecar]:
        return iter(self._sidecars)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._sidecars)

    def get(self, name: str) -> Sidecar:
        for sidecar in self._sidecars:
            if sidecar.name == name:
                return sidecar
        raise ConfigError(f"no sidecar named {name!r}; the room's sidecars: {', '.join(self.names)}")

    def waves(self) -> list[tuple[Sidecar, ...]]:
        """The startup order (ARCHITECTURE §6): each wave starts once the earlier ones are ready."""
        numbers = sorted({s.wave for s in self._sidecars})
        return [tuple(s for s in self._sidecars if s.wave == n) for n in numbers]

    def layout(self) -> RoomLayout:
        return RoomLayout(
            ports={s.name: {p.name: p.number for p in s.ports} for s in self._sidecars},
            status_ports={s.name: s.status_port for s in self._sidecars},
            app_api_ports={s.name: tuple(s.port(p) for p in s.app_api_ports)
                           for s in self._sidecars if s.app_api_ports},
            app_env={name: _PORT_REFERENCE.sub(lambda m, s=s: str(s.port(m.group(1))), value)
                     for s in self._sidecars for name, value in s.app_env},
            failure_policies={s.name: s.on_failure.value for s in self._sidecars},
            init_containers=frozenset(s.name for s in self._sidecars if s.init_container))

    def reserved_ports(self) -> dict[int, str]:
        return {p.number: f"{s.name} ({p.name})" for s in self._sidecars for p in s.ports}

    def spec_problems(self, spec: CleanRoomSpec) -> list[str]:
        """What in a spec clashes with the room's sidecars: an app endpoint on a sidecar's port."""
        reserved = self.reserved_ports()
        return [f"endpoints[{i}].port: {e.port} is the port of the {reserved[e.port]} sidecar; choose another"
                for i, e in enumerate(spec.endpoints) if e.port in reserved]

    def room_problems(self, spec: CleanRoomSpec) -> list[str]:
        """Everything a room of this spec would refuse at start, found without starting it: its clashes with
        the sidecars, and what each sidecar refuses as it derives its configuration."""
        problems = self.spec_problems(spec)
        room = Room(spec, Placement(), self.layout())
        for sidecar in self._sidecars:
            try:
                sidecar.configure(room)
            except SpecError as exc:
                problems += exc.problems
            except CcrError as exc:
                problems.append(f"{sidecar.name}: {exc}")
        return problems

    @contextlib.contextmanager
    def extended(self, *extra: Sidecar) -> Iterator[Registry]:
        """The room with more sidecars, for as long as the block runs (a sidecar under development, tests)."""
        before = self._sidecars
        self._sidecars = self._checked(before + extra)
        try:
            yield self
        finally:
            self._sidecars = before


REGISTRY = Registry(SIDECARS)


def layout() -> RoomLayout:
    return REGISTRY.layout()
