"""The room a sidecar runs in: the resolved spec, where the room runs, and where the other sidecars are.

Every sidecar derives its configuration from a `Room` (`Sidecar.configure`). A room reaches a sidecar's
process only as environment variables, the same in a container and in `ccr room up`:

- `CCR_SPEC`: the resolved spec as canonical JSON (in a container's CCE policy entry, so measured);
- `CCR_SIDECAR`: which sidecar this is;
- the placement (all optional; a Confidential ACI group needs none): `CCR_RUN_DIR` (the group's shared run
  volume: ready files, the sidecars' token, working directories; default /run/ccr), `CCR_MOUNT_ROOT`
  (where the volumes sidecar mounts, shared with the launcher; default /mnt/remote), `CCR_NETNS` (the name
  under /run/netns by which the launcher hands the group's network namespace to the app; default
  ccr-room), `CCR_ROOM_ADDRESS` (the address clients reach the room at, for the inbound certificate),
  `CCR_FIREWALL_BACKEND` (nftables or iptables);
- on a box with the local stand-ins instead of Azure: `CCR_ENDPOINTS` (their endpoints.json: CA bundle,
  mock SEV-SNP platform, dev tokens, Entra) and `CCR_HOST_DATA` (the HOST_DATA the mock platform reports).
- what Confidential ACI adds to every container: `UVM_SECURITY_CONTEXT_DIR` (the VCEK chain, the UVM
  endorsement and the CCE policy; with `ccr aci run` also the simulator's SEV-SNP report socket).

Production (no `CCR_ENDPOINTS`) is the default: endpoints come from the spec, TLS trust from the system store
plus the spec's `trust.ca_certificates` (one bundle file, `Room.ca_bundle`, written before a sidecar serves).

The sidecars' addresses (`RoomLayout`) are not in the environment: they come from the registry, the one
place that holds every sidecar's ports, so a sidecar never imports another to find it.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..spec import DEFAULT_ENTRA_ENDPOINT, CleanRoomSpec, endpoint_variables, parse_spec
from .containers import REMOTE_ROOT, RUN_ROOT
from .errors import ConfigError, SpecError
from .trust import write_ca_bundle
from .untrusted import UntrustedInputError, load_json

SPEC_ENV = "CCR_SPEC"
SIDECAR_ENV = "CCR_SIDECAR"
RUN_DIR_ENV = "CCR_RUN_DIR"
MOUNT_ROOT_ENV = "CCR_MOUNT_ROOT"
NETNS_ENV = "CCR_NETNS"
ROOM_ADDRESS_ENV = "CCR_ROOM_ADDRESS"
FIREWALL_BACKEND_ENV = "CCR_FIREWALL_BACKEND"
ENDPOINTS_ENV = "CCR_ENDPOINTS"
HOST_DATA_ENV = "CCR_HOST_DATA"
#: set by Confidential ACI in every container: the VCEK chain, UVM endorsement and CCE policy of the group
SECURITY_CONTEXT_ENV = "UVM_SECURITY_CONTEXT_DIR"

DEFAULT_NETNS = "ccr-room"
FIREWALL_BACKENDS = ("nftables", "iptables")
_HOST_DATA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Emulation:
    """The local stand-ins a room uses instead of Azure, from the endpoints.json `ccr emulators start`
    (or the compose preparation) writes."""

    endpoints_file: Path
    endpoints: Mapping[str, str]
    #: the HOST_DATA the mock SEV-SNP platform reports: the room's CCE policy hash
    host_data: str | None = None

    def __post_init__(self) -> None:
        if self.host_data is not None and not _HOST_DATA.match(self.host_data):
            raise ConfigError(f"{HOST_DATA_ENV} must be the room's HOST_DATA (64 lower-case hex digits, "
                              "`ccr spec render policy-hash SPEC`)")

    @classmethod
    def load(cls, endpoints_file: str | Path, host_data: str | None = None) -> Emulation:
        try:
            endpoints = endpoint_variables(endpoints_file)
        except SpecError as exc:
            raise ConfigError(f"{ENDPOINTS_ENV}: {'; '.join(exc.problems)}") from None
        return cls(Path(endpoints_file), endpoints, host_data or None)

    def get(self, key: str) -> str | None:
        return self.endpoints.get(key) or None

    @property
    def ca_bundle(self) -> str | None:
        return self.get("ca_bundle")


@dataclass(frozen=True)
class Placement:
    """Where a room runs: what is not in the spec and differs between C-ACI, compose and `ccr room up`."""

    run_dir: Path = Path(RUN_ROOT)
    mount_root: Path = Path(REMOTE_ROOT)
    netns: str = DEFAULT_NETNS
    room_address: str | None = None
    firewall_backend: str = "nftables"
    emulation: Emulation | None = None
    #: what the platform gives the container (UVM_SECURITY_CONTEXT_DIR); None outside Confidential ACI
    security_context_dir: str | None = None

    def __post_init__(self) -> None:
        if self.firewall_backend not in FIREWALL_BACKENDS:
            raise ConfigError(f"{FIREWALL_BACKEND_ENV} is {self.firewall_backend!r}; choose one of "
                              f"{', '.join(FIREWALL_BACKENDS)}")

    def ready_file(self, sidecar: str) -> Path:
        return self.run_dir / "ready" / f"{sidecar}.json"

    def work_dir(self, sidecar: str) -> Path:
        """A sidecar's own files in the run volume (buffers, rendered configuration, mount status)."""
        return self.run_dir / sidecar

    @property
    def ca_bundle_file(self) -> Path:
        """The combined CA bundle (system store + the spec's CAs) every sidecar's outbound TLS trusts."""
        return self.run_dir / "trust" / "ca-bundle.pem"

    @property
    def sidecar_token_file(self) -> Path:
        """The token sidecars present to governance to audit under their own scope (the app has none)."""
        return self.run_dir / "secrets" / "sidecar-token"

    def ensure_sidecar_token(self) -> Path:
        """Every sidecar calls this as it starts; the first one creates the token (atomically, by a hard
        link), the others find it, so all of them hold the same one."""
        path = self.sidecar_token_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            return path
        # not the pid in the name: in a container group every sidecar is pid 1, and they share this folder
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        tmp.write_text(secrets.token_urlsafe(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path

    def to_environment(self) -> dict[str, str]:
        env = {RUN_DIR_ENV: str(self.run_dir), MOUNT_ROOT_ENV: str(self.mount_root), NETNS_ENV: self.netns,
               FIREWALL_BACKEND_ENV: self.firewall_backend}
        if self.room_address:
            env[ROOM_ADDRESS_ENV] = self.room_address
        if self.security_context_dir:
            env[SECURITY_CONTEXT_ENV] = self.security_context_dir
        if self.emulation is not None:
            env[ENDPOINTS_ENV] = str(self.emulation.endpoints_file)
            if self.emulation.host_data:
                env[HOST_DATA_ENV] = self.emulation.host_data
        return env

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Placement:
        endpoints = environ.get(ENDPOINTS_ENV)
        if environ.get(HOST_DATA_ENV) and not endpoints:
            raise ConfigError(f"{HOST_DATA_ENV} is only for the local stand-ins' mock platform: set "
                              f"{ENDPOINTS_ENV} to their endpoints.json too")
        return cls(run_dir=Path(environ.get(RUN_DIR_ENV) or RUN_ROOT),
                   mount_root=Path(environ.get(MOUNT_ROOT_ENV) or REMOTE_ROOT),
                   netns=environ.get(NETNS_ENV) or DEFAULT_NETNS,
                   room_address=environ.get(ROOM_ADDRESS_ENV) or None,
                   firewall_backend=environ.get(FIREWALL_BACKEND_ENV) or "nftables",
                   emulation=Emulation.load(endpoints, environ.get(HOST_DATA_ENV)) if endpoints else None,
                   security_context_dir=environ.get(SECURITY_CONTEXT_ENV) or None)


@dataclass(frozen=True)
class RoomLayout:
    """Where each sidecar of the room listens, from the registry."""

    #: sidecar → port name → number
    ports: Mapping[str, Mapping[str, int]]
    #: sidecar → the name of the port whose GET /status says whether it is ready
    status_ports: Mapping[str, str]
    #: `application.sidecar_apis` name → the ports the app may reach it on
    app_api_ports: Mapping[str, tuple[int, ...]]
    #: what the app's environment says about where the sidecar APIs are
    app_env: Mapping[str, str] = field(default_factory=dict)
    #: sidecar → what its death while the app runs does (`sidecars.common.sidecar.FailurePolicy` values)
    failure_policies: Mapping[str, str] = field(default_factory=dict)
    #: the sidecars that run to completion before the others (the firewall): no /status to wait for or watch
    init_containers: frozenset[str] = frozenset()

    @property
    def sidecars(self) -> tuple[str, ...]:
        return tuple(self.ports)

    def port(self, sidecar: str, name: str = "api") -> int:
        try:
            return self.ports[sidecar][name]
        except KeyError:
            raise ConfigError(f"this room has no sidecar port {sidecar}.{name}") from None

    def url(self, sidecar: str, name: str = "api", path: str = "") -> str:
        return f"http://127.0.0.1:{self.port(sidecar, name)}{path}"

    def status_url(self, sidecar: str) -> str:
        return self.url(sidecar, self.status_ports[sidecar], "/status")

    def sidecar_api_ports(self, apis: Iterable[str]) -> tuple[int, ...]:
        return tuple(sorted({port for api in apis for port in self.app_api_ports[api]}))


@dataclass(frozen=True)
class Room:
    """Everything a sidecar is configured from."""

    spec: CleanRoomSpec
    placement: Placement
    layout: RoomLayout

    @property
    def emulation(self) -> Emulation | None:
        return self.placement.emulation

    def url(self, sidecar: str, name: str = "api", path: str = "") -> str:
        return self.layout.url(sidecar, name, path)

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle for TLS to the services outside the room when anything beyond the system store is
        trusted (the spec's `trust.ca_certificates`, the stand-ins' CA); None: the system store alone."""
        if not self.spec.trust.ca_certificates and not self._emulation_ca_files():
            return None
        return str(self.placement.ca_bundle_file)

    def _emulation_ca_files(self) -> tuple[Path, ...]:
        return (Path(self.emulation.ca_bundle),) if self.emulation and self.emulation.ca_bundle else ()

    def write_ca_bundle(self) -> Path | None:
        """Write `ca_bundle` (before a sidecar serves: its configuration names the file)."""
        if self.ca_bundle is None:
            return None
        return write_ca_bundle(self.placement.ca_bundle_file, self.spec.trust.certificates_pem(),
                               self._emulation_ca_files())

    @property
    def entra_endpoint(self) -> str:
        """The Entra authority: the spec's; a spec that names none, run with the stand-ins, uses theirs."""
        endpoint = str(self.spec.entra_endpoint).rstrip("/")
        emulated = self.emulation.get("entra_endpoint") if self.emulation else None
        if emulated and endpoint == DEFAULT_ENTRA_ENDPOINT:
            return emulated.rstrip("/")
        return endpoint

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], layout: RoomLayout) -> Room:
        return cls(spec_from_environment(environ), Placement.from_environment(environ), layout)


def spec_from_environment(environ: Mapping[str, str]) -> CleanRoomSpec:
    """The resolved spec the room passes in `CCR_SPEC`."""
    text = environ.get(SPEC_ENV)
    if not text:
        raise ConfigError(f"{SPEC_ENV} is not set: the resolved spec as JSON")
    try:
        data = load_json(text)
    except UntrustedInputError as exc:
        raise ConfigError(f"{SPEC_ENV} {exc}") from None
    try:
        return parse_spec(data, source=SPEC_ENV)
    except SpecError as exc:
        raise ConfigError(f"{SPEC_ENV}: {'; '.join(exc.problems)}") from None


def read_sidecar_token(path: Path | None) -> str | None:
    """The room's sidecar token from `path` (None: no token, a sidecar run on its own)."""
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"sidecar token file {path}: {exc.strerror}") from None
