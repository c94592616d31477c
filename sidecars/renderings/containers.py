"""The container group a spec describes: every sidecar, the firewall init container and the app.

This typed model is the one rendering of "what runs in the room" that every consumer shares:

- the CCE policy (`sidecars.renderings.cce`): one policy entry per container, so HOST_DATA measures
  exactly this model;
- the launcher's container policy (Rego, `sidecars/common/rego.py`): checks the app against `group.app`;
- the ARM template, the Kubernetes pod spec and (later) compose / `ccr room up`.

Nothing here talks to podman or Azure: `render_group(spec)` is a pure function of the spec and a few
deployment options, so two renderings of the same spec are equal (and so are their policy hashes).

How sidecars are configured: each sidecar runs `ccr sidecar run NAME` from the shared runtime image
(the proxy from its own image). Everything a sidecar needs to know about the room is in its environment:
`CCR_SPEC` holds the resolved spec as canonical JSON (sorted keys, no whitespace), `CCR_<NAME>_URL`
the local address of every other sidecar it may call, and `CCR_PORT` its own port. Because env is part
of each container's CCE policy entry, the configuration every sidecar runs with is measured.

How the app runs: in every rendering the launcher (a measured, privileged sidecar) starts the app with
podman after the consent check, so the app is not an ACI container of its own. Its entry in the CCE
policy still carries its image digest, layers, command, env, mounts and user, which binds them into
HOST_DATA; the launcher's container policy, rendered from the same `Container`, enforces them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..common.errors import SpecError
from ..spec import CleanRoomSpec

#: Where the sidecar images live. `ccr spec render ... --registry` replaces it (e.g. `myacr.azurecr.io/ccr`);
#: images are built locally from `images/` and tagged `<registry>/<image>:<version>`.
DEFAULT_REGISTRY = "localhost/ccr"
DEFAULT_IMAGE_VERSION = "0.1.0"
RUNTIME_IMAGE = "ccr-runtime"
PROXY_IMAGE = "ccr-proxy"

#: Default ports (ARCHITECTURE §4). The app reaches every sidecar on localhost.
PORTS = {
    "skr": 8284,
    "governance": 8300,
    "identity": 8290,
    "launcher": 8200,
    "proxy-inbound": 15001,
    "proxy-http": 15002,
    "proxy-tcp": 15003,
    "telemetry-grpc": 4317,
    "telemetry-http": 4318,
}
#: `application.sidecar_apis` → the ports the app reaches each on (the firewall opens only these)
SIDECAR_API_PORTS: dict[str, tuple[int, ...]] = {
    "governance": (PORTS["governance"],), "skr": (PORTS["skr"],), "identity": (PORTS["identity"],),
    "telemetry": (PORTS["telemetry-grpc"], PORTS["telemetry-http"])}

#: Shared volumes of the group (ACI emptyDir volumes / Kubernetes emptyDir).
VOLUME_REMOTE = "remotemounts"  # FUSE mounts of the datasources/datasinks, shared with the app
VOLUME_RUN = "ccr-run"  # sockets, readiness files, the app's log pipe
REMOTE_ROOT = "/mnt/remote"
RUN_ROOT = "/run/ccr"

APP_UID_DEFAULT = 1000


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


@dataclass(frozen=True)
class ContainerGroup:
    name: str
    containers: tuple[Container, ...]
    volumes: tuple[str, ...] = (VOLUME_REMOTE, VOLUME_RUN)
    registry: str = DEFAULT_REGISTRY
    identities: tuple[str, ...] = field(default=())

    @property
    def init_containers(self) -> tuple[Container, ...]:
        return tuple(c for c in self.containers if c.role == "init")

    @property
    def sidecars(self) -> tuple[Container, ...]:
        return tuple(c for c in self.containers if c.role == "sidecar")

    @property
    def app(self) -> Container:
        return next(c for c in self.containers if c.role == "app")

    @property
    def platform_containers(self) -> tuple[Container, ...]:
        """What ACI / Kubernetes starts itself (init container first, then the sidecars)."""
        return tuple(c for c in self.containers if c.started_by == "platform")

    def container(self, name: str) -> Container:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict:
        return {"name": self.name, "registry": self.registry, "volumes": list(self.volumes),
                "identities": list(self.identities), "containers": [c.to_json() for c in self.containers]}

    @property
    def public_ports(self) -> tuple[Port, ...]:
        return tuple(p for c in self.containers for p in c.ports if p.public)

    @property
    def total_resources(self) -> Resources:
        # Init containers run before the others and ACI does not add them to the group's request.
        running = [c for c in self.containers if c.role != "init"]
        return Resources(cpu=round(sum(c.resources.cpu for c in running), 3),
                         memory_gb=round(sum(c.resources.memory_gb for c in running), 3))


#: Linux refuses to exec a program when one string of its environment ("NAME=value" and its NUL) is longer
#: than MAX_ARG_STRLEN (32 pages, 128 KiB): E2BIG, "Argument list too long". Every rendering execs the
#: sidecars with CCR_SPEC in their environment (podman, containerd, the C-ACI guest agent), so this is the
#: ceiling whatever the platform accepts; ACI documents no lower limit per variable.
MAX_ARG_STRLEN = 131072
MAX_SPEC_JSON_BYTES = MAX_ARG_STRLEN - len("CCR_SPEC=") - 1


def canonical_spec_json(spec: CleanRoomSpec) -> str:
    """The resolved spec as canonical JSON: what every sidecar receives in `CCR_SPEC`, and so what the CCE
    policy (HOST_DATA) measures. It carries each endpoint's Rego (`policy_rego`), so the members agree on
    the exact policy and a sidecar in a container needs no file beside it."""
    unloaded = [f"endpoints[{i}].policy: the Rego of {e.policy} (endpoint {e.name}) is not in the spec "
                "(load the spec from its file, which inlines it)"
                for i, e in enumerate(spec.endpoints) if e.policy and e.policy_rego is None]
    if unloaded:
        raise SpecError(unloaded)
    text = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_SPEC_JSON_BYTES:  # ASCII: json.dumps escapes everything else
        largest = max(((len(e.policy_rego), i, e.name) for i, e in enumerate(spec.endpoints) if e.policy_rego),
                      default=None)
        hint = (f"; the largest policy is endpoints[{largest[1]}] ({largest[2]}, {largest[0]} characters)"
                if largest else "")
        raise SpecError([f"the resolved spec is {len(text)} bytes of JSON, over the {MAX_SPEC_JSON_BYTES} a "
                         f"sidecar's CCR_SPEC environment variable can hold (Linux MAX_ARG_STRLEN){hint}"])
    return text


def _sidecar_urls() -> tuple[tuple[str, str], ...]:
    return (
        ("CCR_GOVERNANCE_URL", f"http://localhost:{PORTS['governance']}"),
        ("CCR_IDENTITY_URL", f"http://localhost:{PORTS['identity']}"),
        ("CCR_SKR_URL", f"http://localhost:{PORTS['skr']}"),
        ("CCR_TELEMETRY_URL", f"http://localhost:{PORTS['telemetry-http']}"),
    )


# Sidecar requests: small, fixed, and part of the group's total against the Confidential ACI limits.
_SIDECAR_RESOURCES = {
    "firewall": Resources(0.1, 0.1),
    "skr": Resources(0.1, 0.2),
    "governance": Resources(0.1, 0.2),
    "identity": Resources(0.1, 0.1),
    "volumes": Resources(0.2, 0.5),
    "proxy": Resources(0.2, 0.3),
    "telemetry": Resources(0.1, 0.2),
    "launcher": Resources(0.1, 0.2),
}


def _image(registry: str, name: str, version: str) -> str:
    return f"{registry.rstrip('/')}/{name}:{version}"


def render_group(spec: CleanRoomSpec, *, registry: str = DEFAULT_REGISTRY,
                 version: str = DEFAULT_IMAGE_VERSION, identities: tuple[str, ...] = ()) -> ContainerGroup:
    """The container group for `spec`. Pure and deterministic."""
    runtime = _image(registry, RUNTIME_IMAGE, version)
    spec_json = canonical_spec_json(spec)
    common_env = (("CCR_SPEC", spec_json),) + _sidecar_urls()
    run_mount = Mount(target=RUN_ROOT, volume=VOLUME_RUN, mode="rw")

    def sidecar(name: str, *, port: int | None = None, privileged: bool = False,
                capabilities: tuple[str, ...] = (), mounts: tuple[Mount, ...] = (),
                ports: tuple[Port, ...] = (), image: str = runtime,
                role: Literal["init", "sidecar"] = "sidecar",
                extra_env: tuple[tuple[str, str], ...] = ()) -> Container:
        env = (("CCR_SIDECAR", name),) + ((("CCR_PORT", str(port)),) if port else ()) + common_env + extra_env
        return Container(
            name=f"ccr-{name}", role=role, image=image, command=("ccr", "sidecar", "run", name),
            env=tuple(sorted(env)), mounts=(run_mount,) + mounts, user=User(0, 0),
            resources=_SIDECAR_RESOURCES[name], privileged=privileged, capabilities=capabilities,
            ports=ports or ((Port(port),) if port else ()),
        )

    remote_shared = Mount(target=REMOTE_ROOT, volume=VOLUME_REMOTE, mode="rw", propagation="shared")
    containers = [
        # Rules in force before any other container exists (ARCHITECTURE §6 step 1).
        sidecar("firewall", role="init", capabilities=("CAP_NET_ADMIN", "CAP_NET_RAW"), privileged=True),
        # /dev/sev-guest is only reachable from a privileged container on C-ACI.
        sidecar("skr", port=PORTS["skr"], privileged=True),
        sidecar("governance", port=PORTS["governance"]),
        sidecar("identity", port=PORTS["identity"]),
        # FUSE needs /dev/fuse and mount(2).
        sidecar("volumes", privileged=True, mounts=(remote_shared,)),
        sidecar("proxy", image=_image(registry, PROXY_IMAGE, version), port=PORTS["proxy-inbound"],
                ports=(Port(PORTS["proxy-inbound"], public=bool(spec.endpoints)),
                       Port(PORTS["proxy-http"]), Port(PORTS["proxy-tcp"]))),
        sidecar("telemetry", port=PORTS["telemetry-http"],
                ports=(Port(PORTS["telemetry-grpc"]), Port(PORTS["telemetry-http"]))),
        # Runs the app with podman, so it needs privileges; it sees the FUSE mounts to hand them on.
        sidecar("launcher", port=PORTS["launcher"], privileged=True, mounts=(remote_shared,)),
    ]
    containers.append(_app_container(spec))
    return ContainerGroup(name=spec.name, containers=tuple(containers), registry=registry,
                          identities=tuple(identities))


def _app_container(spec: CleanRoomSpec) -> Container:
    app = spec.application
    mounts = [Mount(target=vol.path_in_app, volume=VOLUME_REMOTE, source=vol.name,
                    mode="ro" if where.startswith("datasources") else "rw")
              for where, vol in spec.volumes_with_location()]
    # Extra mounts are carried as asked: the container policy, not the renderer, decides on them.
    mounts += [Mount(target=m.target, volume=m.source, mode=m.mode) for m in app.mounts]
    env = dict(app.env)
    env.setdefault("CCR_GOVERNANCE_URL", f"http://localhost:{PORTS['governance']}")
    # azure-identity's ManagedIdentityCredential takes the IMDS host from this variable (IDENTITY_ENDPOINT
    # alone selects no source: it needs IDENTITY_HEADER too), so the app's SDKs reach the identity sidecar.
    env.setdefault("AZURE_POD_IDENTITY_AUTHORITY_HOST", f"http://localhost:{PORTS['identity']}")
    env.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://localhost:{PORTS['telemetry-http']}")
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
