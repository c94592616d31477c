"""The room network of a cluster: one bridge in a netns of its own, and one veth from each room's netns to it.

Every room is a netns of its own (`NAME-driver`, `NAME-exec-1`, …) with loopback and its `spark0` link to
the bridge, nothing else: no route to the host or anywhere beyond the cluster. The subnet is the same for
every cluster (10.205.0.0/24): each cluster's bridge is in its own netns, so clusters never meet.

Each room's firewall (nftables, `table inet ccr_cluster`, applied atomically) accepts on `spark0` only TCP
from and to the cluster's own rooms' addresses, and only to the Spark ports of the room it goes to
(ports.py); everything else on `spark0` is dropped. Loopback stays open (py4j, Python workers).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import ProcessError
from ..localroom.netns import NETNS_DIR, delete_room_network, netns_exists
from .ports import DRIVER_ROOM_PORTS, EXECUTOR_ROOM_PORTS

#: what `ip netns exec NAME` mounts over /etc (hosts, resolv.conf)
NETNS_ETC = Path("/etc/netns")
SUBNET_PREFIX = "10.205.0"
ROOM_IF = "spark0"
BRIDGE = "br0"


def _run(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise ProcessError(f"{' '.join(argv[:4])} failed: {result.stderr.strip()[:300]}")


def _ip_batch(lines: list[str], netns: str) -> None:
    _run(["ip", "-n", netns, "-batch", "-"], "\n".join(lines) + "\n")


@dataclass(frozen=True)
class ClusterRoom:
    """One room of the cluster: its netns and its address on the room network."""

    netns: str
    role: str  # "driver" or "executor"
    number: int  # 0 for the driver, 1..N for executors

    @property
    def address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.number + 1}"

    @property
    def bridge_port(self) -> str:
        return f"p{self.number}"


@dataclass(frozen=True)
class ClusterNetwork:
    name: str
    rooms: tuple[ClusterRoom, ...]

    @property
    def netns(self) -> str:
        return f"{self.name}-net"

    @property
    def driver(self) -> ClusterRoom:
        return self.rooms[0]

    @property
    def executors(self) -> tuple[ClusterRoom, ...]:
        return self.rooms[1:]

    @classmethod
    def plan(cls, name: str, executors: int) -> ClusterNetwork:
        rooms = [ClusterRoom(f"{name}-driver", "driver", 0)]
        rooms += [ClusterRoom(f"{name}-exec-{i}", "executor", i) for i in range(1, executors + 1)]
        return cls(name, tuple(rooms))


def create_bridge(net: ClusterNetwork) -> None:
    if netns_exists(net.netns):
        raise ProcessError(f"network namespace {net.netns} already exists (ccr cluster down {net.name})")
    _run(["ip", "netns", "add", net.netns])
    _ip_batch(["link set lo up", f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"], net.netns)


def write_name_files(room: ClusterRoom, members: tuple[ClusterRoom, ...]) -> None:
    """/etc/netns/ROOM/{hosts,resolv.conf}, which `ip netns exec` mounts over /etc for the room's processes.
    The room has no DNS server to reach: a lookup sent to the machine's resolver would wait for its timeout
    (5 s, twice) before failing, and the JVMs look names up often. Here it fails at once (loopback answers
    "port unreachable"), and the cluster's rooms are in the hosts file by name."""
    folder = NETNS_ETC / room.netns
    folder.mkdir(parents=True, exist_ok=True)
    machine = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else "127.0.0.1 localhost\n"
    names = "".join(f"{m.address} {m.netns}\n" for m in members)
    (folder / "hosts").write_text(machine.rstrip("\n") + "\n# the cluster's rooms\n" + names)
    (folder / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")


def delete_name_files(netns: str) -> None:
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def add_room(net: ClusterNetwork, room: ClusterRoom, members: tuple[ClusterRoom, ...]) -> None:
    """The room's netns, its link to the bridge and its firewall. `members` are the rooms it may talk to."""
    if netns_exists(room.netns):
        raise ProcessError(f"network namespace {room.netns} already exists (ccr cluster down {net.name})")
    write_name_files(room, members)
    _run(["ip", "netns", "add", room.netns])
    _ip_batch([f"link add {room.bridge_port} type veth peer name {ROOM_IF} netns {room.netns}",
               f"link set {room.bridge_port} master {BRIDGE}", f"link set {room.bridge_port} up"], net.netns)
    apply_firewall(room, members)  # before the link comes up: no moment without rules
    _ip_batch(["link set lo up", f"addr add {room.address}/24 dev {ROOM_IF}", f"link set {ROOM_IF} up"],
              room.netns)


def firewall_rules(room: ClusterRoom, members: tuple[ClusterRoom, ...]) -> str:
    """The room's nftables rule set (one `table inet`, replaced atomically)."""
    peers = sorted({m.address for m in members if m.netns != room.netns})
    driver_ports = ", ".join(str(p) for p in DRIVER_ROOM_PORTS)
    executor_ports = ", ".join(str(p) for p in EXECUTOR_ROOM_PORTS)
    own_ports = driver_ports if room.role == "driver" else executor_ports
    peer_set = "{ " + ", ".join(peers) + " }" if peers else ""
    driver_address = SUBNET_PREFIX + ".1"
    executor_peers = [p for p in peers if p != driver_address]
    inbound = f"iifname {ROOM_IF} ip saddr {peer_set} tcp dport {{ {own_ports} }} accept" if peers else ""
    outbound = []
    if room.role == "executor":
        outbound.append(f"oifname {ROOM_IF} ip daddr {driver_address} tcp dport {{ {driver_ports} }} accept")
    if executor_peers:
        outbound.append(f"oifname {ROOM_IF} ip daddr {{ {', '.join(executor_peers)} }} "
                        f"tcp dport {{ {executor_ports} }} accept")
    return "\n".join([
        "table inet ccr_cluster {}",
        "delete table inet ccr_cluster",
        "table inet ccr_cluster {",
        "  chain input { type filter hook input priority 0; policy drop;",
        "    iif lo accept",
        "    ct state established,related accept",
        f"    {inbound}",
        "  }",
        "  chain output { type filter hook output priority 0; policy drop;",
        "    oif lo accept",
        "    ct state established,related accept",
        *(f"    {line}" for line in outbound),
        "  }",
        "  chain forward { type filter hook forward priority 0; policy drop; }",
        "}",
    ]) + "\n"


def apply_firewall(room: ClusterRoom, members: tuple[ClusterRoom, ...]) -> None:
    _run(["ip", "netns", "exec", room.netns, "nft", "-f", "-"], firewall_rules(room, members))


def delete_cluster_network(net: ClusterNetwork) -> list[str]:
    """Every netns of the cluster (rooms and bridge), whatever is left of it; the names deleted."""
    deleted = []
    for netns in [room.netns for room in net.rooms] + [net.netns]:
        delete_name_files(netns)
        if (NETNS_DIR / netns).exists():
            delete_room_network(netns)
            deleted.append(netns)
    return deleted
