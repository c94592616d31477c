"""The firewall's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..common.containers import Resources
from ..common.room import Room, RoomLayout
from ..common.sidecar import FailurePolicy, Sidecar, SidecarPort
from ..spec import CleanRoomSpec
from .model import ROOT_UID, config_from_spec


@dataclass(frozen=True)
class FirewallSidecarConfig:
    spec: CleanRoomSpec
    layout: RoomLayout
    port: int
    backend: str = "nftables"
    #: act in this network namespace (None: the sidecar's own, the room's)
    netns: str | None = None
    #: uids the rules do not confine: the sidecars'
    exempt_uids: tuple[int, ...] = (ROOT_UID,)
    #: TCP ports reachable from outside the room besides the inbound proxy's
    open_ports: tuple[int, ...] = ()
    host: str = "127.0.0.1"
    ready_file: Path | None = None
    #: the room's own addresses known before it runs (CCR_ROOM_ADDRESS); at start the firewall adds its
    #: namespace's interface addresses, and refuses egress to any of them
    room_addresses: tuple[str, ...] = ()


def configure(room: Room) -> FirewallSidecarConfig:
    address = room.placement.room_address
    config = FirewallSidecarConfig(spec=room.spec, layout=room.layout, port=room.layout.port("firewall"),
                                   backend=room.placement.firewall_backend,
                                   ready_file=room.placement.ready_file("firewall"),
                                   room_addresses=(address,) if address else ())
    # What can be refused without the running room (`ccr spec validate` through the registry) is, here.
    config_from_spec(config.spec, config.layout, room_addresses=config.room_addresses)
    return config


FIREWALL = Sidecar(
    name="firewall", summary="confines the app's network to the proxy (nftables or iptables, IPv4 and IPv6)",
    # It serves nothing (an init container: apply, check, exit 0); the port is the registry's reservation,
    # named in its ready file. Not a container port.
    ports=(SidecarPort("api", 8296, declared=False),), resources=Resources(0.1, 0.1), wave=1,
    configure=configure, run="sidecars.firewall.__main__:run",
    # Rules in force before any other container exists (ARCHITECTURE §6 step 1), everywhere: on C-ACI and
    # Kubernetes an init container, in `ccr room up` and compose a process run to completion first.
    init_container=True, privileged=True, capabilities=("CAP_NET_ADMIN", "CAP_NET_RAW"),
    # Its rules live in the netns's kernel tables, not in its process (on C-ACI, an init container, the
    # process is gone before the app starts): its death opens nothing.
    on_failure=FailurePolicy.REPORT,
    preload=("sidecars.firewall.nft", "nftables"),
)
