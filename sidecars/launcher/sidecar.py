"""The launcher's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.containers import Resources
from ..common.errors import ProcessError
from ..common.room import Room
from ..common.sidecar import FailurePolicy, Sidecar, SidecarPort
from ..spec import CleanRoomSpec

#: The launcher's phases in which the room's startup is over, one way or the other.
FINAL_PHASES = ("running", "exited", "failed", "stopped", "ready")


#: How long the launcher waits for the other sidecars before it gives up. Generous on purpose: a sidecar's
#: Python start-up under its 0.1-0.2 CPU request (a hard cap on Confidential ACI and in the simulator) takes
#: tens of seconds on a busy host, and 60 s was missed now and then; a sidecar that never comes up is still
#: reported, naming it, only later.
SIDECARS_READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class LauncherConfig:
    spec: CleanRoomSpec
    port: int
    #: where the volumes sidecar mounts each volume (DIR/NAME)
    mount_root: Path
    #: the room's network namespace the app joins (None: no network at all)
    netns: str | None
    #: every other sidecar's /status, waited for before anything else
    sidecar_status_urls: Mapping[str, str]
    governance_url: str
    #: the telemetry sidecar (the app's output, exports); None: the app's output is dropped
    telemetry_url: str | None
    #: what the app's environment says about where the sidecar APIs are (the CCE policy measures it)
    app_env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    ready_file: Path | None = None
    sidecar_token_file: Path | None = None
    ready_timeout: float = SIDECARS_READY_TIMEOUT_S
    #: in a container the group's network namespace has no name yet: the launcher gives it `netns`
    name_own_netns: bool = False
    #: each other sidecar → what its death while the app runs does (a `FailurePolicy` value); a sidecar
    #: missing here is watched as STOP_APP
    sidecar_failure_policies: Mapping[str, str] = field(default_factory=dict)
    #: how often the watchdog asks each sidecar's /status while the app runs
    watch_interval_s: float = 0.5
    #: a sidecar that has not answered for this long is lost
    lost_after_s: float = 2.0

    @property
    def container_name(self) -> str:
        return app_container_name(self.spec, self.netns)


def app_container_name(spec: CleanRoomSpec, netns: str | None) -> str:
    """The app's container, named after the room's netns too: two rooms of one spec on one machine (each
    with its own netns) never share or remove each other's app."""
    base = f"ccr-{spec.name}-{spec.application.name}"
    return f"{base}-{netns}" if netns else base


def configure(room: Room) -> LauncherConfig:
    layout = room.layout
    # An init container (the firewall) has run to completion before the launcher starts: its work lives on
    # in the kernel, which the launcher checks itself (firewall_verify), not in a process to wait for or watch.
    watched = [name for name in layout.sidecars if name != "launcher" and name not in layout.init_containers]
    return LauncherConfig(
        spec=room.spec, port=layout.port("launcher"), ready_file=room.placement.ready_file("launcher"),
        mount_root=room.placement.mount_root, netns=room.placement.netns,
        sidecar_status_urls={name: layout.status_url(name) for name in watched},
        governance_url=room.url("governance"),
        telemetry_url=room.url("telemetry", "http"), app_env=dict(layout.app_env),
        sidecar_token_file=room.placement.sidecar_token_file, name_own_netns=True,
        sidecar_failure_policies={name: layout.failure_policies[name] for name in watched})


def app_started(status: int, body: Any) -> bool:
    """Ready once the startup is over; a launcher that refused to start the app says why."""
    if not (isinstance(body, dict) and body.get("status") in FINAL_PHASES):
        return False
    if body["status"] == "failed":
        raise ProcessError(body.get("error") or "the launcher refused to start the app")
    return True


LAUNCHER = Sidecar(
    name="launcher", summary="checks consent, the firewall and the container policy, then runs the app with podman",
    ports=(SidecarPort("api", 8200),), resources=Resources(0.1, 0.2), wave=4,
    configure=configure, run="sidecars.launcher.__main__:run", ready=app_started,
    # Runs the app with podman, so it needs privileges; it sees the FUSE mounts to hand them on.
    privileged=True, shares_mounts=True, runs_containers=True, start_early=True,
    # It runs the app: its guard process (sidecars.launcher.guard) removes the app when it dies.
    on_failure=FailurePolicy.STOP_APP,
    own_step="launcher: consent, firewall, policy, launch",
    preload=("sidecars.launcher.service",),
)
