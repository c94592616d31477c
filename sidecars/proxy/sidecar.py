"""The proxy's registry entry and its configuration, derived from the room."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..common.containers import PROXY_IMAGE, Resources
from ..common.room import Room
from ..common.sidecar import FailurePolicy, Need, Sidecar, SidecarPort
from ..common.trust import SYSTEM_CA_BUNDLE
from ..spec import CleanRoomSpec


@dataclass(frozen=True)
class ProxyConfig:
    """What decides the rendered Envoy configuration, and how the sidecar runs it."""

    spec: CleanRoomSpec
    #: where the rendered configuration, certificates and logs go
    run_dir: Path
    inbound_port: int
    egress_http_port: int
    egress_tcp_port: int
    admin_port: int
    authz_port: int
    extproc_port: int
    status_port: int
    inbound_address: str = "0.0.0.0"
    #: CA bundle that allowed HTTPS upstreams must chain to
    upstream_ca: str = SYSTEM_CA_BUNDLE
    #: who endorses the inbound certificate: a CA the room generates, or the contract CA through governance
    certificate_source: Literal["local", "governance"] = "local"
    governance_url: str | None = None
    #: the room's sidecar token, which governance asks for before it endorses the room's TLS name
    sidecar_token_file: Path | None = None
    #: the room CA that issues the inbound certificate (local source; default RUN_DIR/room-ca)
    ca_dir: Path | None = None
    #: DNS names and IPs the inbound certificate is valid for
    tls_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    #: with egress.dns: tcp, where the app's DNS goes (None: the nameservers in /etc/resolv.conf)
    dns_resolvers: tuple[str, ...] | None = None
    #: evaluate every policy in OPA, even those Envoy's RBAC filter could enforce
    no_rbac: bool = False
    engine: str = "opa"
    opa_url: str | None = None
    #: skr's port, whose nonce evidence the inbound endpoints serve outside the room (None: not served)
    evidence_port: int | None = None
    authz_workers: int = 2
    envoy_concurrency: int = 1
    ready_file: Path | None = None


def configure(room: Room) -> ProxyConfig:
    def port(name: str) -> int:
        return room.layout.port("proxy", name)

    address = room.placement.room_address
    return ProxyConfig(
        spec=room.spec, run_dir=room.placement.work_dir("proxy"), inbound_port=port("inbound"),
        egress_http_port=port("http"), egress_tcp_port=port("tcp"), admin_port=port("admin"),
        authz_port=port("authz"), extproc_port=port("extproc"), status_port=port("status"),
        tls_names=("localhost", "127.0.0.1", *((address,) if address else ())),
        # Clients verify the room's certificate against the contract CA held by CGS.
        certificate_source="governance" if room.spec.endpoints else "local",
        governance_url=room.url("governance"), sidecar_token_file=room.placement.sidecar_token_file,
        upstream_ca=room.ca_bundle or SYSTEM_CA_BUNDLE, ready_file=room.placement.ready_file("proxy"),
        evidence_port=room.layout.port("skr") if "skr" in room.layout.ports else None)


PROXY = Sidecar(
    name="proxy", summary="Envoy + OPA: the app's API behind TLS and its policy; egress only to the allow-list",
    ports=(SidecarPort("inbound", 15001, public_with_endpoints=True), SidecarPort("http", 15002),
           SidecarPort("tcp", 15003), SidecarPort("status", 15020, declared=False),
           SidecarPort("admin", 15000, declared=False), SidecarPort("authz", 15010, declared=False),
           SidecarPort("extproc", 15011, declared=False)),
    status_port="status", resources=Resources(0.2, 0.3), wave=3, image=PROXY_IMAGE,
    configure=configure, run="sidecars.proxy.__main__:run", needs=frozenset({Need.CONSENT}),
    # It enforces the API and egress policies: the app stops rather than run unguarded.
    on_failure=FailurePolicy.STOP_APP,
    preload=("sidecars.proxy.envoy", "sidecars.proxy.runtime", "sidecars.proxy.certs"),
)
