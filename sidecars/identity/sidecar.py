"""The identity sidecar's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..common.containers import Resources
from ..common.room import Room
from ..common.sidecar import FailurePolicy, Need, Sidecar, SidecarPort
from ..spec import DEFAULT_ENTRA_ENDPOINT, CleanRoomSpec

ENTRA_ENDPOINT = DEFAULT_ENTRA_ENDPOINT


@dataclass(frozen=True)
class IdentitySidecarConfig:
    port: int
    governance_url: str
    host: str = "127.0.0.1"
    ready_file: Path | None = None
    entra_endpoint: str = ENTRA_ENDPOINT
    entra_ca_bundle: str | None = None
    #: tenant of identities the spec does not name
    tenant_id: str | None = None
    #: client id → tenant id of every federated identity the spec names
    tenants: dict[str, str] = field(default_factory=dict)
    #: the identity used when a request names none
    client_id: str | None = None
    #: the assertion's sub (default: the contract id)
    subject: str | None = None
    identity_header_file: Path | None = None
    sidecar_token_file: Path | None = None


def _default_client_id(spec: CleanRoomSpec) -> str | None:
    """A request naming no identity gets the volumes' one, when they all use the same."""
    ids = {vol.store.identity.client_id for _, vol in spec.volumes_with_location() if vol.store.identity}
    return ids.pop() if len(ids) == 1 else None


def configure(room: Room) -> IdentitySidecarConfig:
    emulation = room.emulation
    return IdentitySidecarConfig(
        port=room.layout.port("identity"), ready_file=room.placement.ready_file("identity"),
        governance_url=room.url("governance"),
        entra_endpoint=room.entra_endpoint,
        entra_ca_bundle=room.ca_bundle,
        tenant_id=(emulation.get("entra_tenant_id") if emulation else None) or "common",
        tenants=room.spec.federated_identities(), client_id=_default_client_id(room.spec),
        sidecar_token_file=room.placement.sidecar_token_file)


IDENTITY = Sidecar(
    name="identity", summary="managed identity tokens (the IMDS API) from CGS-issued federated assertions",
    ports=(SidecarPort("api", 8290),), resources=Resources(0.1, 0.1), wave=2,
    configure=configure, run="sidecars.identity.__main__:run", needs=frozenset({Need.OUTSIDE}),
    # It only answers requests: without it the app's token requests fail, nothing leaks.
    on_failure=FailurePolicy.REPORT,
    app_api_ports=("api",),
    # azure-identity's ManagedIdentityCredential takes the IMDS host from this variable (IDENTITY_ENDPOINT
    # alone selects no source: it needs IDENTITY_HEADER too), so the app's SDKs reach the identity sidecar.
    app_env=(("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://localhost:{port:api}"),),
    preload=("sidecars.identity.service",),
)
