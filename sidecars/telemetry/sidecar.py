"""The telemetry sidecar's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..common.containers import Resources
from ..common.room import Room
from ..common.sidecar import FailurePolicy, Need, Sidecar, SidecarPort
from ..spec import CleanRoomSpec


@dataclass(frozen=True)
class TelemetrySidecarConfig:
    grpc_port: int
    http_port: int
    #: the governance sidecar: consent checks and audit before anything leaves
    governance_url: str
    #: the skr sidecar, which releases the sinks' KEKs (None: only DEK files can key the sinks)
    skr_url: str | None = None
    #: the spec's telemetry and log sinks (None: receive and buffer, export nowhere)
    spec: CleanRoomSpec | None = None
    host: str = "127.0.0.1"
    ready_file: Path | None = None
    #: IMDS-shaped token endpoint (the identity sidecar) for storage and Key Vault
    identity_url: str | None = None
    ca_bundle: str | None = None
    sidecar_token_file: Path | None = None
    #: the sinks' DEK files (ccr-dek/v1); default: released in the room through skr from the spec's key
    telemetry_dek_file: Path | None = None
    log_dek_file: Path | None = None
    #: export continuously at this interval (overrides the sinks' export_interval_s)
    export_interval_s: float | None = None
    #: where the encrypted buffer file lives (None: a fresh temporary directory)
    buffer_dir: Path | None = None
    #: the exported objects' prefix (default: the spec's name)
    room_name: str | None = None


def configure(room: Room) -> TelemetrySidecarConfig:
    layout = room.layout
    return TelemetrySidecarConfig(
        grpc_port=layout.port("telemetry", "grpc"), http_port=layout.port("telemetry", "http"),
        ready_file=room.placement.ready_file("telemetry"), spec=room.spec, governance_url=room.url("governance"),
        skr_url=room.url("skr"), identity_url=room.url("identity"), ca_bundle=room.ca_bundle,
        sidecar_token_file=room.placement.sidecar_token_file, buffer_dir=room.placement.work_dir("telemetry"))


TELEMETRY = Sidecar(
    name="telemetry", summary="OTLP receiver, encrypted buffer, consented export to the spec's sinks",
    ports=(SidecarPort("grpc", 4317), SidecarPort("http", 4318)), status_port="http",
    resources=Resources(0.1, 0.2), wave=2, configure=configure, run="sidecars.telemetry.__main__:run",
    # It holds the app's output for the consented export: without it that output would be lost unseen.
    on_failure=FailurePolicy.STOP_APP,
    needs=frozenset({Need.OUTSIDE}), app_api_ports=("grpc", "http"),
    app_env=(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:{port:http}"),),
    preload=("sidecars.telemetry.app", "sidecars.telemetry.export", "sidecars.telemetry.sinks",
             "sidecars.telemetry.receiver"),
)
