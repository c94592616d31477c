"""Run a function inside a named network namespace (`ip netns add NAME`, i.e. /run/netns/NAME).

Network namespaces are per thread, so the function runs in a fresh thread that joins the namespace with
setns(2) and ends with it; the calling thread (and the rest of the process) never leaves its own
namespace. Netlink and x_tables sockets opened by that thread (libnftables, libiptc) live in the target
namespace. Python 3.11 has no os.setns, hence ctypes.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..common.errors import ConfigError, ProcessError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"--netns {name!r}: expected the name of a network namespace (ip netns list)")
    path = NETNS_DIR / name
    if not path.exists():
        raise ConfigError(f"network namespace {name!r} does not exist (create it with: ip netns add {name})")
    return path


def local_addresses(name: str | None) -> tuple[str, ...]:
    """The IPv4 addresses of the interfaces in namespace `name` (None: ours): the room's own addresses, which
    only the running room knows (a local room's veth address, a container group's address in Azure)."""
    argv = ["ip", *(("-n", str(netns_path(name).name)) if name else ()), "-j", "-4", "addr", "show"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
        interfaces = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ProcessError(f"cannot list the room's addresses ({' '.join(argv)}): {exc}") from None
    return tuple(sorted({info["local"] for interface in interfaces for info in interface.get("addr_info", ())
                         if "local" in info}))


def run_in_netns(name: str | None, func: Callable[[], T]) -> T:
    """`func()` in namespace `name` (None: here, in the caller's thread). Exceptions propagate."""
    if name is None:
        return func()
    path = netns_path(name)
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise ConfigError(f"cannot enter network namespace {name!r}: {os.strerror(err)} "
                                      "(needs root / CAP_SYS_ADMIN)")
            finally:
                os.close(fd)
            outcome["value"] = func()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
