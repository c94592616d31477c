"""The container policy check: the app as it is about to run, against the app the spec declares.

The declared side is `sidecars.common.containers.app_container` (the model the CCE policy also measures); the
actual side is the `AppLaunch` that becomes podman's arguments, plus the digest of the local image the
reference resolves to (the reference alone proves nothing: the digest must match the pin). The rules
are Rego (policies/container.rego), evaluated with the real OPA engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..common.containers import Container
from ..common.errors import PolicyDenied
from ..common.rego import RegoEngine
from ..spec import CleanRoomSpec
from .run import AppLaunch, Mount

POLICY_FILE = Path(__file__).resolve().parents[2] / "policies" / "container.rego"


def declared_volumes(spec: CleanRoomSpec) -> dict[str, dict[str, str]]:
    return {vol.name: {"mode": "ro" if where.startswith("datasources") else "rw", "target": vol.path_in_app}
            for where, vol in spec.volumes_with_location()}


def build_launch(spec: CleanRoomSpec, app: Container, *, mount_root: Path, netns: str | None,
                 container_name: str) -> AppLaunch:
    """How the launcher runs the declared app: its volumes from the volumes sidecar's mounts."""
    volumes = declared_volumes(spec)
    mounts = []
    for mount in app.mounts:
        name = mount.source or mount.volume
        source = str(mount_root / name) if name in volumes else mount.volume
        mounts.append(Mount(volume=name, source=source, target=mount.target, read_only=mount.read_only))
    return AppLaunch(
        container_name=container_name, image=app.image, command=app.command, env=app.env,
        uid=app.user.uid, gid=app.user.gid, mounts=tuple(mounts), cpus=app.resources.cpu,
        memory_gb=app.resources.memory_gb, netns=netns, privileged=app.privileged,
        capabilities=app.capabilities, working_dir=app.working_dir if app.working_dir != "/" else None,
        read_only_rootfs=app.read_only_rootfs, no_new_privileges=app.no_new_privileges,
    )


def policy_input(launch: AppLaunch, local_digest: str) -> dict[str, Any]:
    return {
        "image": launch.image, "local_digest": local_digest, "command": list(launch.command),
        "env": dict(launch.env), "uid": launch.uid, "gid": launch.gid, "privileged": launch.privileged,
        "capabilities": list(launch.capabilities), "read_only_rootfs": launch.read_only_rootfs,
        "no_new_privileges": launch.no_new_privileges, "cpus": launch.cpus, "memory_gb": launch.memory_gb,
        "mounts": [{"volume": m.volume, "target": m.target, "mode": "ro" if m.read_only else "rw"}
                   for m in launch.mounts],
    }


class ContainerPolicy:
    """The rules of policies/container.rego with the spec's declared app as data."""

    def __init__(self, spec: CleanRoomSpec, declared_app: Container, policy_file: Path = POLICY_FILE):
        self._engine = RegoEngine().add_policy_file(policy_file)
        self._engine.add_data({"declared": {
            "app": {"image": declared_app.image, "command": list(declared_app.command),
                    "env": dict(declared_app.env)},
            "volumes": declared_volumes(spec),
        }})

    def violations(self, launch: AppLaunch, local_digest: str) -> list[str]:
        result = self._engine.evaluate("ccr.container.deny", policy_input(launch, local_digest))
        return sorted(result or [])

    def check(self, launch: AppLaunch, local_digest: str) -> None:
        """Raise PolicyDenied naming every rule the launch breaks."""
        violations = self.violations(launch, local_digest)
        if violations:
            raise PolicyDenied("container policy denied the app: " + "; ".join(violations))
