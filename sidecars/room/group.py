"""The container group a spec describes: every sidecar of the registry and the app.

This typed model is the one rendering of "what runs in the room" every consumer shares: the CCE policy
(one entry per container, so HOST_DATA measures exactly this model), the ARM template, the Kubernetes pod
spec, the compose file, and `ccr room up`, which runs each sidecar container's command as a process.

Nothing here talks to podman or Azure: `render_group(spec)` is a pure function of the spec, the registry and
a few deployment options, so two renderings of the same spec are equal (and so are their policy hashes).

How sidecars are configured: each runs `ccr sidecar run NAME` from the shared runtime image (the proxy from
its own). Its environment holds `CCR_SIDECAR` and `CCR_SPEC`, the resolved spec as canonical JSON (sorted
keys, no whitespace); it derives everything else from the spec and the registry (`sidecars.common.room`).
Because env is part of each container's CCE policy entry, the configuration every sidecar runs with is
measured.

How the app runs: in every rendering the launcher (a measured, privileged sidecar) starts the app with
podman after the consent check, so the app is not an ACI container of its own. Its entry in the CCE policy
still carries its image digest, layers, command, env, mounts and user, which binds them into HOST_DATA; the
launcher's container policy, rendered from the same `Container`, enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common.containers import (
    DEFAULT_IMAGE_VERSION,
    DEFAULT_REGISTRY,
    REMOTE_ROOT,
    RUN_ROOT,
    VOLUME_REMOTE,
    VOLUME_RUN,
    Container,
    Mount,
    Port,
    Resources,
    User,
    app_container,
    image_ref,
)
from ..common.errors import SpecError
from ..common.room import SIDECAR_ENV, SPEC_ENV
from ..common.sidecar import Sidecar
from ..spec import CleanRoomSpec
from .registry import REGISTRY


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


def canonical_spec_json(spec: CleanRoomSpec) -> str:
    """The resolved spec as canonical JSON: what every sidecar receives in `CCR_SPEC`, and so what the CCE
    policy (HOST_DATA) measures. It carries each endpoint's Rego (`policy_rego`), so the members agree on
    the exact policy and a sidecar in a container needs no file beside it. (That it fits `CCR_SPEC` is a
    rule of the spec: `sidecars.spec.MAX_SPEC_JSON_BYTES`.)"""
    unloaded = [f"endpoints[{i}].policy: the Rego of {e.policy} (endpoint {e.name}) is not in the spec "
                "(load the spec from its file, which inlines it)"
                for i, e in enumerate(spec.endpoints) if e.policy and e.policy_rego is None]
    if unloaded:
        raise SpecError(unloaded)
    return spec.canonical_json()


def sidecar_container(sidecar: Sidecar, spec: CleanRoomSpec, spec_json: str, *, registry: str = DEFAULT_REGISTRY,
                      version: str = DEFAULT_IMAGE_VERSION) -> Container:
    """One sidecar's container, from its registry record."""
    mounts = [Mount(target=RUN_ROOT, volume=VOLUME_RUN, mode="rw")]
    if sidecar.shares_mounts:
        mounts.append(Mount(target=REMOTE_ROOT, volume=VOLUME_REMOTE, mode="rw", propagation="shared"))
    return Container(
        name=f"ccr-{sidecar.name}", role="init" if sidecar.init_container else "sidecar",
        image=image_ref(sidecar.image, registry, version), command=("ccr", "sidecar", "run", sidecar.name),
        env=tuple(sorted(((SIDECAR_ENV, sidecar.name), (SPEC_ENV, spec_json)))), mounts=tuple(mounts),
        user=User(0, 0), resources=sidecar.resources, privileged=sidecar.privileged,
        capabilities=sidecar.capabilities,
        ports=tuple(Port(p.number, public=p.public_with_endpoints and bool(spec.endpoints))
                    for p in sidecar.ports if p.declared))


def render_group(spec: CleanRoomSpec, *, registry: str = DEFAULT_REGISTRY,
                 version: str = DEFAULT_IMAGE_VERSION, identities: tuple[str, ...] = ()) -> ContainerGroup:
    """The container group for `spec` (`registry`: where the sidecar images live). Pure and deterministic."""
    problems = REGISTRY.spec_problems(spec)
    if problems:
        raise SpecError(problems)
    spec_json = canonical_spec_json(spec)
    containers = [sidecar_container(s, spec, spec_json, registry=registry, version=version) for s in REGISTRY]
    containers.append(app_container(spec, REGISTRY.layout().app_env))
    return ContainerGroup(name=spec.name, containers=tuple(containers), registry=registry,
                          identities=tuple(identities))
