"""Host mounts the local placements make and undo (compose's and the ACI simulator's shared directories)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path` (resolved), in /proc/mounts order."""
    resolved = str(path.resolve())
    targets = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [t for t in targets if t == resolved or t.startswith(resolved + "/")]


def make_shared(directory: Path) -> None:
    """Make `directory` a shared mount of its own. Containers' rshared binds of it then share one peer group,
    so a FUSE mount made below it in one container (the volumes sidecar's) reaches another (the launcher's);
    on a host whose / is private, each bind would otherwise start a peer group of its own."""
    directory.mkdir(parents=True, exist_ok=True)
    if str(directory.resolve()) not in mounts_below(directory):
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True, capture_output=True)
    subprocess.run(["mount", "--make-shared", str(directory)], check=True, capture_output=True)
