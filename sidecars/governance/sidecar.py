"""The governance sidecar's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..common.containers import Resources
from ..common.room import Room
from ..common.sidecar import FailurePolicy, Need, Sidecar, SidecarPort


@dataclass(frozen=True)
class GovernanceSidecarConfig:
    port: int
    cgs_endpoint: str
    contract_id: str
    skr_url: str
    host: str = "127.0.0.1"
    ready_file: Path | None = None
    #: CGS path prefix (default app/contracts/CONTRACT_ID)
    api_path_prefix: str | None = None
    cgs_ca_bundle: str | None = None
    #: how often execution consent is re-checked while the room runs (0: never)
    consent_poll_interval_s: float = 5.0
    #: consent that cannot be confirmed this long counts as revoked
    consent_unverifiable_after_s: float = 60.0
    #: POSTed a notice when execution consent is revoked (the launcher's stop endpoint)
    subscriber_url: str | None = None
    #: the token sidecars present to audit under their own scope; other callers then write under 'app'
    sidecar_token_file: Path | None = None
    #: secrets only the sidecars may read (the spec's store credentials)
    sidecar_only_secrets: frozenset[str] = frozenset()


def configure(room: Room) -> GovernanceSidecarConfig:
    governance = room.spec.contract.governance
    return GovernanceSidecarConfig(
        port=room.layout.port("governance"), ready_file=room.placement.ready_file("governance"),
        cgs_endpoint=str(governance.endpoint), contract_id=room.spec.contract.id,
        cgs_ca_bundle=governance.ca_bundle or room.ca_bundle, skr_url=room.url("skr"),
        consent_poll_interval_s=governance.consent_poll_interval_s,
        subscriber_url=room.url("launcher", path="/consent/revoked"),
        sidecar_token_file=room.placement.sidecar_token_file,
        sidecar_only_secrets=room.spec.store_credential_secrets())


GOVERNANCE = Sidecar(
    name="governance",
    summary="consent checks, audit events, secrets, documents, tokens and certificates from CGS",
    ports=(SidecarPort("api", 8300),), resources=Resources(0.1, 0.2), wave=2,
    configure=configure, run="sidecars.governance.__main__:run", needs=frozenset({Need.OUTSIDE}),
    # Without it no audit is acknowledged and a revoked consent reaches no one: the app stops.
    on_failure=FailurePolicy.STOP_APP,
    app_api_ports=("api",), app_env=(("CCR_GOVERNANCE_URL", "http://localhost:{port:api}"),),
    preload=("sidecars.governance.cgs_client", "sidecars.governance.service"),
)
