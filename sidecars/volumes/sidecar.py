"""The volumes sidecar's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.containers import Resources
from ..common.errors import ProcessError
from ..common.room import Room
from ..common.sidecar import FailurePolicy, Need, Sidecar, SidecarPort
from ..spec import CleanRoomSpec


@dataclass(frozen=True)
class VolumesConfig:
    spec: CleanRoomSpec
    port: int
    skr_url: str
    #: status and log files of the mounts
    run_dir: Path
    host: str = "127.0.0.1"
    ready_file: Path | None = None
    #: mount each volume at DIR/NAME (None: at the volume's path in the app)
    mount_root: Path | None = None
    #: IMDS-shaped token endpoint (the identity sidecar)
    identity_url: str | None = None
    #: the local emulation's dev token issuer
    dev_tokens_dir: str | None = None
    ca_bundle: str | None = None
    #: owner of the files as the app sees them (None: the spec's application user)
    uid: int | None = None
    gid: int | None = None
    mount_timeout_s: float = 120.0
    #: the governance sidecar: a datasink's manifest key is endorsed by the contract CA through it
    governance_url: str | None = None
    sidecar_token_file: Path | None = None
    #: standalone, without governance: the key and certificate that sign datasink manifests (PEM files)
    manifest_key: Path | None = None
    manifest_cert: Path | None = None


def configure(room: Room) -> VolumesConfig:
    emulation = room.emulation
    return VolumesConfig(
        spec=room.spec, port=room.layout.port("volumes"), ready_file=room.placement.ready_file("volumes"),
        skr_url=room.url("skr"), identity_url=room.url("identity"), mount_root=room.placement.mount_root,
        run_dir=room.placement.work_dir("volumes"), ca_bundle=room.ca_bundle,
        governance_url=room.url("governance"), sidecar_token_file=room.placement.sidecar_token_file,
        dev_tokens_dir=emulation.get("dev_tokens_dir") if emulation else None)


def mounts_ready(status: int, body: Any) -> bool:
    """Ready once every volume is mounted; a failed mount ends the wait, each failure with its reason."""
    if isinstance(body, dict) and body.get("status") == "failed":
        reasons = [f"{m.get('name')}: {m.get('reason')}" for m in body.get("mounts", []) if m.get("state") == "failed"]
        raise ProcessError("; ".join(reasons) or str(body.get("error") or body))
    return status == 200


VOLUMES = Sidecar(
    name="volumes", summary="the datasources (read-only) and datasinks as encrypted FUSE mounts",
    # Its /status is for `ccr room up` and the launcher only: not a container port.
    ports=(SidecarPort("api", 8286, declared=False),), resources=Resources(0.2, 0.5), wave=3,
    configure=configure, run="sidecars.volumes.__main__:run", ready=mounts_ready,
    needs=frozenset({Need.OUTSIDE, Need.CONSENT}),
    # Its mounts are the app's data and its only way to write results: the app stops.
    on_failure=FailurePolicy.STOP_APP,
    # FUSE needs /dev/fuse and mount(2).
    privileged=True, devices=("/dev/fuse",), shares_mounts=True,
    preload=("sidecars.volumes.fs", "sidecars.common.keyflow", "sidecars.common.azure_clients",
             "sidecars.volumes.owner"),
)
