"""The handlers of `ccr cluster`."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from ..common.errors import ConfigError
from ..localroom.netns import NETNS_DIR, delete_room_network, stop_processes_in
from .network import delete_name_files

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")
_ROOM = r"-(driver|net|exec-[0-9]{1,3})"


def rooms_of(name: str) -> list[str]:
    """The namespaces of cluster `name` on this machine, rooms first, the room network last."""
    pattern = re.compile(re.escape(name) + _ROOM)
    found = sorted(p.name for p in NETNS_DIR.glob(f"{name}-*") if pattern.fullmatch(p.name))
    return sorted(found, key=lambda n: n.endswith("-net"))


def remove_cluster(name: str, state_dir: Path | None) -> list[str]:
    """Every process in cluster `name`'s namespaces, the namespaces, the state folder; what it removed."""
    removed = []
    for netns in rooms_of(name):
        stopped = stop_processes_in(netns, timeout=3.0)
        delete_room_network(netns)
        delete_name_files(netns)
        removed.append(f"{netns} ({len(stopped)} processes)")
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    return removed


def checked_name(name: str) -> str:
    """A cluster's name, safe in namespace names and globs."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"cluster name {name[:64]!r}: 1..41 lower-case letters, digits and '-' only")
    return name


def down(args: argparse.Namespace) -> int:
    removed = remove_cluster(checked_name(args.name), Path(args.state_dir) if args.state_dir else None)
    print(f"cluster {args.name}: " + (", ".join(removed) if removed else "nothing left to remove"))
    return 0
