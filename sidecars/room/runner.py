"""Run one sidecar of the room it is in: `ccr sidecar run NAME` with no options.

The same in a container of the group and in a process of `ccr room up`: the room comes from the
environment (`sidecars.common.room`), the sidecar derives its configuration from it (its registry record's
`configure`) and serves (`run`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..common.errors import ConfigError, SpecError
from ..common.room import SIDECAR_ENV, Room
from ..common.sidecar import Sidecar
from .registry import REGISTRY


def run_in_room(name: str, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    sidecar = REGISTRY.get(name)
    declared = environ.get(SIDECAR_ENV)
    if declared and declared != name:
        raise ConfigError(f"{SIDECAR_ENV} is {declared!r}: this container runs that sidecar, not {name}")
    config = configure_in_room(sidecar, Room.from_environment(environ, REGISTRY.layout()))
    return int(sidecar.entry_point()(config) or 0)


def configure_in_room(sidecar: Sidecar, room: Room) -> Any:
    """The sidecar's configuration, with what it refers to in the room's run directory put in place."""
    problems = REGISTRY.spec_problems(room.spec)
    if problems:
        raise SpecError(problems, "CCR_SPEC")
    config = sidecar.configure(room)
    room.write_ca_bundle()
    room.placement.ensure_sidecar_token()
    room.placement.ready_file(sidecar.name).parent.mkdir(parents=True, exist_ok=True)
    return config
