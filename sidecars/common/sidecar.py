"""What a sidecar is, written once: the record every rendering and the local runtime are made from.

Each sidecar declares one `Sidecar` next to its code (`sidecars/<name>/sidecar.py`) and
`sidecars.room.registry` lists them. From the records alone come the container group (and so the CCE
policy, the ARM template, the pod spec and the compose file), the processes of `ccr room up` and their
startup order, `ccr room status` and `ccr room logs`, the ports the firewall opens to the app, and the
`ccr sidecar` help. A record is light: importing it loads no server code (`run` names the entry point).

How a sidecar is configured: `configure(room)` derives its typed configuration from the `Room` (the
resolved spec, where the room runs, and the other sidecars' addresses), once, in the sidecar's own
process; `run(config)` serves. The same two calls happen in a container and in `ccr room up`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .containers import RUNTIME_IMAGE, Resources
from .errors import ProcessError
from .room import Room


class Need(StrEnum):
    """What must be in place before a sidecar starts, beyond the sidecars of earlier waves."""

    #: the room's HOST_DATA (the CCE policy hash), which a mock SEV-SNP platform reports
    HOST_DATA = "host-data"
    #: the services outside the room (attestation, vaults, governance, storage) are reachable
    OUTSIDE = "outside"
    #: execution consent confirmed by governance: the sidecar releases keys or gets endorsed certificates
    CONSENT = "consent"


class FailurePolicy(StrEnum):
    """What the room does when a sidecar dies while the app runs (the launcher's watchdog applies it; the
    loss is audited in CGS either way). Written once, in each sidecar's record."""

    #: the sidecar guards the app (its data, its way out, its consent): losing it stops the app
    STOP_APP = "stop-app"
    #: losing it opens nothing and loses nothing (the app's calls to it fail): audited and reported, the app
    #: goes on
    REPORT = "report"


@dataclass(frozen=True)
class SidecarPort:
    name: str
    number: int
    #: listed among the container's ports: an API the app or other sidecars call (status-only and internal
    #: ports are not)
    declared: bool = True
    #: reachable from outside the group when the spec serves API endpoints (the proxy's inbound listener)
    public_with_endpoints: bool = False


def ready_when_ok(status: int, body: Any) -> bool:
    """The default readiness: `GET /status` answers 200; a body saying `failed` ends the wait at once."""
    if isinstance(body, dict) and body.get("status") == "failed":
        raise ProcessError(str(body.get("error") or body.get("reason") or body))
    return status == 200


Readiness = Callable[[int, Any], bool]


@dataclass(frozen=True)
class Sidecar:
    name: str
    #: one line for `ccr sidecar list` and the help
    summary: str
    ports: tuple[SidecarPort, ...]
    #: its requests: small and fixed, part of the group's total against the Confidential ACI limits
    resources: Resources
    #: startup wave (ARCHITECTURE §6): a wave starts once every sidecar of the earlier ones is ready
    wave: int
    #: `Room` → its typed configuration; pure (no I/O), so `ccr spec validate` can run it too
    configure: Callable[[Room], Any]
    #: "module:function" serving a configuration; imported only when the sidecar runs, so reading the
    #: registry (renderings, help) never imports server code
    run: str
    #: the port whose `GET /status` says whether it is ready
    status_port: str = "api"
    ready: Readiness = ready_when_ok
    needs: frozenset[Need] = frozenset()
    #: what its death while the app runs does to the app; fail closed unless the record says why not
    on_failure: FailurePolicy = FailurePolicy.STOP_APP
    image: str = RUNTIME_IMAGE
    privileged: bool = False
    capabilities: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    #: on Confidential ACI and Kubernetes it runs to completion before the other containers
    init_container: bool = False
    #: sees the FUSE mounts in the group's shared remote volume (mounts them, or hands them to the app)
    shares_mounts: bool = False
    #: runs the app's container with podman
    runs_containers: bool = False
    #: the ports the app reaches when `application.sidecar_apis` lists this sidecar (none: never)
    app_api_ports: tuple[str, ...] = ()
    #: the app's environment telling it where this sidecar's API is ({url} and {port:NAME} are filled in)
    app_env: tuple[tuple[str, str], ...] = ()
    #: started with the wave before its own, to take its start-up off the critical path (it waits for the
    #: others' /status itself)
    start_early: bool = False
    #: its readiness is waited for in a startup step of its own, named so (it is long: the app's launch)
    own_step: str | None = None
    #: modules `ccr room up`'s fork server imports once for it, beyond its `run` module
    preload: tuple[str, ...] = field(default=())

    def port(self, name: str = "api") -> int:
        for port in self.ports:
            if port.name == name:
                return port.number
        raise KeyError(f"sidecar {self.name} has no port named {name!r}")

    @property
    def run_module(self) -> str:
        return self.run.partition(":")[0]

    def entry_point(self) -> Callable[[Any], int]:
        module, _, function = self.run.partition(":")
        return getattr(importlib.import_module(module), function)
