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


def down(args: argparse.Namespace) -> int:
    if not _NAME.fullmatch(args.name):
        raise ConfigError(f"cluster name {args.name[:64]!r}: lower-case letters, digits and '-' only")
    removed = []
    for netns in rooms_of(args.name):
        stopped = stop_processes_in(netns, timeout=3.0)
        delete_room_network(netns)
        delete_name_files(netns)
        removed.append(f"{netns} ({len(stopped)} processes)")
    if args.state_dir:
        shutil.rmtree(Path(args.state_dir), ignore_errors=True)
    print(f"cluster {args.name}: " + (", ".join(removed) if removed else "nothing left to remove"))
    return 0
