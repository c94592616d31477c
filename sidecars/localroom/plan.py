"""What `ccr room up` starts for a spec: each sidecar's command line, port and place in the startup order.

Every sidecar runs as its own process inside the room's network namespace, on its default port (the
netns is the room's own, so rooms never clash), exactly as in the container group: the app reaches skr at
localhost:8284, governance at localhost:8300 and so on. The stand-ins are reached at their endpoints.json
URLs through the loopback forwarders.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..renderings.containers import PORTS
from ..spec import CleanRoomSpec

FIREWALL_PORT = 8296
VOLUMES_PORT = 8286
PROXY_STATUS_PORT = 15020
#: `python -m sidecars sidecar NAME`: what precedes a sidecar's own options in `SidecarLaunch.argv`
_COMMAND_LENGTH = 5


@dataclass(frozen=True)
class SidecarLaunch:
    name: str
    port: int
    argv: tuple[str, ...]
    #: `/status` must answer 200 before the next step (volumes: every mount is up)
    status_path: str = "/status"

    @property
    def options(self) -> tuple[str, ...]:
        """The sidecar's own options: what follows `ccr sidecar run NAME`, as a process or in a container."""
        return self.argv[_COMMAND_LENGTH:]


@dataclass
class RoomPlan:
    spec_path: Path
    spec: CleanRoomSpec
    endpoints_file: Path
    endpoints: dict[str, str]
    run_dir: Path
    netns: str
    host_data: str
    #: the room's address on its outside link: the inbound certificate must be valid for it
    room_address: str = "127.0.0.1"
    firewall_backend: str = "nftables"
    python: str = sys.executable
    _token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def mount_root(self) -> Path:
        return self.run_dir / "mnt"

    @property
    def sidecar_token_file(self) -> Path:
        return self.run_dir / "secrets" / "sidecar-token"

    def write_secrets(self) -> None:
        """The token sidecars present to governance to audit under their own scope (the app has none)."""
        self.sidecar_token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sidecar_token_file.write_text(self._token)
        self.sidecar_token_file.chmod(0o600)

    def ready_file(self, name: str) -> Path:
        return self.run_dir / "ready" / f"{name}.json"

    def log_file(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def forwarded_ports(self) -> list[int]:
        """The host loopback ports of the stand-ins the sidecars call."""
        ports = []
        for key in ("maa_endpoint", "keyvault_url", "cgs_endpoint", "entra_endpoint", "storage_url"):
            url = self.endpoints.get(key)
            if url and urlsplit(url).hostname in ("127.0.0.1", "localhost") and urlsplit(url).port:
                ports.append(urlsplit(url).port)
        return sorted(set(ports))

    def _ccr(self, name: str, *options: str) -> tuple[str, ...]:
        return (self.python, "-m", "sidecars", "sidecar", "run", name, *options,
                "--ready-file", str(self.ready_file(name)))

    def _spec_options(self) -> tuple[str, ...]:
        # spec_path is the resolved spec (canonical JSON): no ${NAME} is left for a sidecar to fill in.
        return ("--spec", str(self.spec_path), "--endpoints", str(self.endpoints_file))

    @staticmethod
    def _local(port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{port}{path}"

    def _identity_client_id(self) -> tuple[str, ...]:
        ids = {vol.store.identity.client_id for _, vol in self.spec.volumes_with_location() if vol.store.identity}
        return ("--client-id", ids.pop()) if len(ids) == 1 else ()

    def sidecars(self) -> dict[str, SidecarLaunch]:
        ca = self.endpoints.get("ca_bundle", "")
        governance = self.spec.contract.governance
        launches = [
            SidecarLaunch("firewall", FIREWALL_PORT, self._ccr(
                "firewall", *self._spec_options(), "--backend", self.firewall_backend,
                "--port", str(FIREWALL_PORT))),
            SidecarLaunch("telemetry", PORTS["telemetry-http"], self._ccr(
                "telemetry", *self._spec_options(), "--grpc-port", str(PORTS["telemetry-grpc"]),
                "--http-port", str(PORTS["telemetry-http"]), "--governance-url", self._local(PORTS["governance"]),
                "--sidecar-token-file", str(self.sidecar_token_file), "--skr-url", self._local(PORTS["skr"]),
                "--identity-url", self._local(PORTS["identity"]), "--ca-bundle", ca,
                "--buffer-dir", str(self.run_dir / "telemetry"))),
            SidecarLaunch("skr", PORTS["skr"], self._ccr(
                "skr", "--port", str(PORTS["skr"]), *self._spec_options(), "--platform", "mock",
                "--mock-platform-dir", self.endpoints["mock_platform_dir"], "--host-data", self.host_data,
                *(("--dev-tokens-dir", self.endpoints["dev_tokens_dir"]) if "dev_tokens_dir" in self.endpoints
                  else ()))),
            SidecarLaunch("governance", PORTS["governance"], self._ccr(
                "governance", "--port", str(PORTS["governance"]), "--cgs-endpoint", str(governance.endpoint),
                "--contract-id", self.spec.contract.id, "--cgs-ca-bundle", governance.ca_bundle or ca,
                "--skr-url", self._local(PORTS["skr"]),
                "--consent-poll-interval", f"{governance.consent_poll_interval_s:g}",
                "--subscriber-url", self._local(PORTS["launcher"], "/consent/revoked"),
                "--sidecar-token-file", str(self.sidecar_token_file))),
            SidecarLaunch("identity", PORTS["identity"], self._ccr(
                "identity", "--port", str(PORTS["identity"]), "--governance-url", self._local(PORTS["governance"]),
                "--entra-endpoint", self.endpoints.get("entra_endpoint", ""), "--entra-ca-bundle", ca,
                "--tenant-id", self.endpoints.get("entra_tenant_id", "common"), *self._identity_client_id(),
                "--sidecar-token-file", str(self.sidecar_token_file))),
            SidecarLaunch("volumes", VOLUMES_PORT, self._ccr(
                "volumes", *self._spec_options(), "--port", str(VOLUMES_PORT),
                "--skr-url", self._local(PORTS["skr"]), "--identity-url", self._local(PORTS["identity"]),
                "--mount-root", str(self.mount_root), "--run-dir", str(self.run_dir / "volumes"))),
            SidecarLaunch("proxy", PROXY_STATUS_PORT, self._ccr(
                "proxy", *self._spec_options(), "--run-dir", str(self.run_dir / "proxy"),
                "--status-port", str(PROXY_STATUS_PORT), "--tls-name", "localhost", "--tls-name", "127.0.0.1",
                "--tls-name", self.room_address,
                # Clients verify the room's certificate against the contract CA held by CGS.
                *(("--certificate-source", "governance", "--governance-url", self._local(PORTS["governance"]))
                  if self.spec.endpoints else ()))),
            SidecarLaunch("launcher", PORTS["launcher"], self._ccr(
                "launcher", *self._spec_options(), "--port", str(PORTS["launcher"]),
                "--mount-root", str(self.mount_root), "--netns", self.netns,
                "--governance-url", self._local(PORTS["governance"]),
                "--firewall-url", self._local(FIREWALL_PORT), "--telemetry-url", self._local(PORTS["telemetry-http"]),
                "--sidecar-token-file", str(self.sidecar_token_file),
                *(arg for name, port in (("skr", PORTS["skr"]), ("governance", PORTS["governance"]),
                                         ("identity", PORTS["identity"]), ("volumes", VOLUMES_PORT),
                                         ("telemetry", PORTS["telemetry-http"]), ("firewall", FIREWALL_PORT),
                                         ("proxy", PROXY_STATUS_PORT))
                  for arg in ("--wait", f"{name}={self._local(port, '/status')}")))),
        ]
        return {launch.name: launch for launch in launches}
