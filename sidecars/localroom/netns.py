"""The container group's network namespace.

A C-ACI container group is one network namespace shared by all its containers. Locally it is a named
netns (`/run/netns/NAME`, so podman can join it with `--network ns:…`) with loopback up and a veth pair
to the host carrying IPv4 and IPv6: the room's outside link, on addresses of our own (10.203.N.0/30 and
fd63:6372:N::/64), used for allowed egress such as the db-access demo's database. The stand-ins are
reached through loopback forwarders instead (see forward.py), so their URLs are the same in and out.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import ProcessError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ProcessError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class RoomNetwork:
    """The addresses of one room's netns and its host link."""

    netns: str
    index: int

    @property
    def host_if(self) -> str:
        return f"ccrh{self.index}"

    @property
    def room_if(self) -> str:
        return "eth0"

    @property
    def host_v4(self) -> str:
        return f"10.203.{self.index}.1"

    @property
    def room_v4(self) -> str:
        return f"10.203.{self.index}.2"

    @property
    def host_v6(self) -> str:
        return f"fd63:6372:{self.index:x}::1"

    @property
    def room_v6(self) -> str:
        return f"fd63:6372:{self.index:x}::2"

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.netns


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def _free_index() -> int:
    used = {int(line.split(":")[1].strip().split("@")[0][4:])
            for line in _ip("-o", "link", "show").stdout.splitlines()
            if line.split(":")[1].strip().startswith("ccrh")}
    for index in range(1, 250):
        if index not in used:
            return index
    raise ProcessError("no free room network index (250 rooms exist?)")


def _ip_batch(lines: list[str], netns: str | None = None) -> None:
    """Several `ip` commands in one process (`ip -batch`): a room's network is set up in a few of them."""
    argv = ["ip", *(("-n", netns) if netns else ()), "-batch", "-"]
    result = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if result.returncode != 0:
        raise ProcessError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def _no_dad(ifname: str) -> None:
    """No IPv6 duplicate-address detection on `ifname` (in the calling thread's netns): the addresses are
    ours and must work at once."""
    Path(f"/proc/sys/net/ipv6/conf/{ifname}/accept_dad").write_text("0")


def _add_link(netns: str, attempts: int = 8) -> RoomNetwork:
    """The veth pair on the first free index; another room starting at the same moment may take that index
    between our look and our `ip link add`, so a taken one is skipped and the next tried."""
    for _attempt in range(attempts):
        net = RoomNetwork(netns, _free_index())
        result = _ip("link", "add", net.host_if, "type", "veth", "peer", "name", net.room_if, "netns", netns,
                     check=False)
        if result.returncode == 0:
            return net
        if "File exists" not in result.stderr:
            raise ProcessError(f"ip link add {net.host_if} failed: {result.stderr.strip()}")
    raise ProcessError(f"no free room link for {netns} after {attempts} attempts (rooms starting at once?)")


def create_room_network(netns: str) -> RoomNetwork:
    """Create the netns with lo up and a v4/v6 veth link to the host. Fails if it already exists."""
    if netns_exists(netns):
        raise ProcessError(f"network namespace {netns} already exists (ccr room down, or choose another name)")
    _ip("netns", "add", netns)
    try:
        net = _add_link(netns)
        _no_dad(net.host_if)
        with entered(netns):
            _no_dad(net.room_if)
        _ip_batch([f"addr add {net.host_v4}/30 dev {net.host_if}",
                   f"addr add {net.host_v6}/64 dev {net.host_if} nodad",
                   f"link set {net.host_if} up"])
        _ip_batch(["link set lo up",
                   f"addr add {net.room_v4}/30 dev {net.room_if}",
                   f"addr add {net.room_v6}/64 dev {net.room_if} nodad",
                   f"link set {net.room_if} up",
                   f"route add default via {net.host_v4}",
                   f"route add default via {net.host_v6}"], netns=netns)
    except (ProcessError, OSError) as exc:
        delete_room_network(netns)
        if isinstance(exc, OSError):
            raise ProcessError(f"cannot set up the network of {netns}: {exc}") from exc
        raise
    return net


def find_room_network(netns: str) -> RoomNetwork | None:
    if not netns_exists(netns):
        return None
    for line in _ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("ccrh") and f"link-netns {netns}" in line:
            return RoomNetwork(netns, int(name[4:]))
    return RoomNetwork(netns, 0)


def delete_room_network(netns: str) -> bool:
    """Delete the netns (its veth end goes with it, and so does the host end). False if absent."""
    if not netns_exists(netns):
        return False
    net = find_room_network(netns)
    _ip("netns", "delete", netns)
    if net and net.index:
        _ip("link", "delete", net.host_if, check=False)
    return True


def processes_in(netns: str) -> list[int]:
    """Every process whose network namespace is `netns` (same nsfs inode and device as /run/netns/NAME)."""
    try:
        target = os.stat(NETNS_DIR / netns)
    except FileNotFoundError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found = os.stat(entry / "ns" / "net")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if (found.st_ino, found.st_dev) == (target.st_ino, target.st_dev):
            pids.append(int(entry.name))
    return pids


def stop_processes_in(netns: str, timeout: float = 5.0) -> list[int]:
    """SIGTERM every process still in the room's netns, SIGKILL what is left after `timeout`; returns the
    pids it found. What a dead sidecar left behind (Envoy and the authz server of a killed proxy, the mount
    processes of a killed volumes sidecar) has no recorded parent any more, but it is still in the room: on
    C-ACI a container's processes end with it, and here the netns is what they share."""
    found = processes_in(netns)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        left = [pid for pid in processes_in(netns) if pid in found]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in processes_in(netns) if pid in found]
        if not left:
            break
    return found


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the body with the calling thread in `netns` (sockets created there stay there)."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise ProcessError(f"cannot enter network namespace {netns}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                raise ProcessError("cannot return to the host network namespace")
    finally:
        os.close(target)
        os.close(original)
