"""The containers of a room, as every rendering and the launcher see them: typed, platform-neutral.

`sidecars.room.group` builds a room's containers from the sidecar registry and the spec; the CCE policy
measures them, the ARM template, the pod spec and the compose file render them, `ccr room up` runs them as
processes, and the launcher's container policy checks the app against `app_container(spec, ...)`, the
same derivation HOST_DATA measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from ..spec import CleanRoomSpec

#: Where the sidecar images live. `--registry` replaces it (e.g. `myacr.azurecr.io/ccr`); images are built
#: locally from `images/` and tagged `<registry>/<image>:<version>`.
DEFAULT_REGISTRY = "localhost/ccr"
DEFAULT_IMAGE_VERSION = "0.1.0"
RUNTIME_IMAGE = "ccr-runtime"
PROXY_IMAGE = "ccr-proxy"

#: Shared volumes of the group (ACI emptyDir volumes / Kubernetes emptyDir).
VOLUME_REMOTE = "remotemounts"  # FUSE mounts of the datasources/datasinks, shared with the app
VOLUME_RUN = "ccr-run"  # sockets, readiness files, the sidecars' token
REMOTE_ROOT = "/mnt/remote"
RUN_ROOT = "/run/ccr"


def image_ref(name: str, registry: str = DEFAULT_REGISTRY, version: str = DEFAULT_IMAGE_VERSION) -> str:
    return f"{registry.rstrip('/')}/{name}:{version}"


@dataclass(frozen=True)
class Mount:
    """One mount in a container. `volume` names a shared group volume; `source` is a path inside it
    (for the app: the datasource's FUSE mount) or empty for the whole volume."""

    target: str
    volume: str
    mode: Literal["ro", "rw"] = "ro"
    source: str = ""
    #: bidirectional propagation: a FUSE mount made inside the volume becomes visible to the others
    propagation: Literal["private", "shared"] = "private"

    @property
    def read_only(self) -> bool:
        return self.mode == "ro"


@dataclass(frozen=True)
class Resources:
    cpu: float
    memory_gb: float


@dataclass(frozen=True)
class User:
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"


@dataclass(frozen=True)
class Port:
    port: int
    protocol: Literal["TCP", "UDP"] = "TCP"
    #: reachable from outside the group (the group's IP address); otherwise localhost only
    public: bool = False


@dataclass(frozen=True)
class Container:
    """One container of the group: everything the CCE policy and the container policy measure."""

    name: str
    role: Literal["init", "sidecar", "app"]
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...]
    user: User
    resources: Resources
    privileged: bool = False
    #: capabilities added on top of the runtime's default set (for the app: on top of none)
    capabilities: tuple[str, ...] = ()
    #: drop every capability (the app); sidecars keep the runtime's default set
    drop_all_capabilities: bool = False
    no_new_privileges: bool = False
    read_only_rootfs: bool = False
    #: None: the image's WorkingDir (or "/"), which is what the runtime uses when none is given
    working_dir: str | None = None
    ports: tuple[Port, ...] = ()
    #: stdout/stderr may go to the platform's log stream (never for the app: it could leak data)
    allow_stdio_access: bool = True
    #: who starts it: the platform (ACI/Kubernetes) or the launcher sidecar (the app, after consent)
    started_by: Literal["platform", "launcher"] = "platform"

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def to_json(self) -> dict:
        """Plain JSON (e.g. the input of the launcher's container policy): env as an object, mounts and
        ports as lists of objects, user as {uid, gid}."""
        data = asdict(self)
        data["env"] = self.env_dict
        data["command"] = list(self.command)
        data["capabilities"] = list(self.capabilities)
        return data

    @property
    def image_is_pinned(self) -> bool:
        return "@sha256:" in self.image



def app_container(spec: CleanRoomSpec, sidecar_env: Mapping[str, str]) -> Container:
    """The app as the spec declares it; `sidecar_env` tells it where the sidecar APIs are (the registry's
    `app_env`), unless the spec's own `application.env` says otherwise."""
    app = spec.application
    mounts = [Mount(target=vol.path_in_app, volume=VOLUME_REMOTE, source=vol.name,
                    mode="ro" if where.startswith("datasources") else "rw")
              for where, vol in spec.volumes_with_location()]
    # Extra mounts are carried as asked: the container policy, not the renderer, decides on them.
    mounts += [Mount(target=m.target, volume=m.source, mode=m.mode) for m in app.mounts]
    env = {**sidecar_env, **app.env}
    return Container(
        name=app.name, role="app", image=app.image, command=tuple(app.command),
        env=tuple(sorted(env.items())), mounts=tuple(mounts), user=User(app.uid, app.gid),
        resources=Resources(app.resources.cpu, app.resources.memory_gb), privileged=app.privileged,
        capabilities=tuple(_cap_name(c) for c in app.capabilities), drop_all_capabilities=True,
        no_new_privileges=True, read_only_rootfs=True, working_dir=app.working_dir,
        ports=tuple(Port(e.port) for e in spec.endpoints), allow_stdio_access=False, started_by="launcher",
    )


def _cap_name(cap: str) -> str:
    cap = cap.upper()
    return cap if cap.startswith("CAP_") else f"CAP_{cap}"
