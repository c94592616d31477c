"""The skr sidecar's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..common.containers import Resources
from ..common.errors import ConfigError
from ..common.room import Room
from ..common.sidecar import FailurePolicy, Need, Sidecar, SidecarPort
from .destinations import Destinations

#: Where evidence comes from, which is also what the room reports it runs on (skr's /status, its audit events):
#: sev-snp = /dev/sev-guest (Confidential ACI); simulated = the report socket of `ccr aci run`; mock = the
#: local stand-ins' in-process mock platform (`ccr room up`, compose). auto = sev-snp, else simulated, else
#: refuse (a mock only with a mock platform directory, which only the stand-ins' emulation gives).
Platform = Literal["auto", "sev-snp", "simulated", "mock"]
PLATFORMS: tuple[str, ...] = ("auto", "sev-snp", "simulated", "mock")


@dataclass(frozen=True)
class SkrConfig:
    port: int
    host: str = "127.0.0.1"
    ready_file: Path | None = None
    #: evidence source (see `Platform`)
    platform: Platform = "auto"
    #: what the platform gives the container: the VCEK chain, UVM endorsement, CCE policy (and the
    #: simulator's report socket); None: UVM_SECURITY_CONTEXT_DIR of the process
    security_context_dir: str | None = None
    mock_platform_dir: str | None = None
    #: mock only: the report's HOST_DATA (32 bytes) and MEASUREMENT (48 bytes, None: the endorsed one)
    host_data: bytes | None = None
    measurement: bytes | None = None
    debuggable: bool = False
    ca_bundle: str | None = None
    #: Key Vault access tokens from the emulation's dev issuer (the stand-ins only)
    dev_tokens_dir: str | None = None
    #: otherwise from the room's identity sidecar (IMDS shape) for releases whose caller brings no
    #: access_token (None: the managed identity through azure-identity, standalone)
    identity_url: str | None = None
    #: where it may go: in a room, only the attestation services and vaults the spec names
    destinations: Destinations = Destinations()
    #: the governance sidecar, through which each release is recorded in CGS before the key is handed out
    #: (always in a room; None: releases are not audited, as with Microsoft's SKR sidecar)
    governance_url: str | None = None
    #: the token that lets skr audit under its own scope
    sidecar_token_file: Path | None = None


def configure(room: Room) -> SkrConfig:
    emulation = room.emulation
    mock_dir = emulation.get("mock_platform_dir") if emulation else None
    if mock_dir and not emulation.host_data:
        raise ConfigError("the stand-ins' mock SEV-SNP platform needs the room's HOST_DATA (CCR_HOST_DATA, "
                          "`ccr spec render policy-hash SPEC`)")
    return SkrConfig(
        port=room.layout.port("skr"), ready_file=room.placement.ready_file("skr"),
        platform="mock" if mock_dir else "auto", mock_platform_dir=mock_dir,
        host_data=bytes.fromhex(emulation.host_data) if mock_dir else None,
        security_context_dir=room.placement.security_context_dir, ca_bundle=room.ca_bundle,
        dev_tokens_dir=emulation.get("dev_tokens_dir") if emulation else None, identity_url=room.url("identity"),
        destinations=Destinations.from_spec(room.spec), governance_url=room.url("governance"),
        sidecar_token_file=room.placement.sidecar_token_file)


SKR = Sidecar(
    name="skr", summary="attestation and secure key release (Microsoft's SKR sidecar API)",
    ports=(SidecarPort("api", 8284),), resources=Resources(0.1, 0.2), wave=2,
    configure=configure, run="sidecars.skr.__main__:run",
    needs=frozenset({Need.HOST_DATA, Need.OUTSIDE}),
    # It only answers requests: without it the app's attestations and key releases fail, nothing leaks.
    on_failure=FailurePolicy.REPORT,
    # /dev/sev-guest is only reachable from a privileged container on C-ACI.
    privileged=True, app_api_ports=("api",), app_env=(("CCR_SKR_URL", "http://localhost:{port:api}"),),
    preload=("sidecars.skr.app", "sidecars.skr.flow", "sidecars.common.devtokens", "sidecars.attestation.maa_client"),
)
