"""The proxy's configuration model: what Envoy must do, built from the spec, before any Envoy syntax.

`envoy.render_bootstrap(model)` turns it into Envoy's bootstrap. Ports default to the proxy's registry
entry (`sidecar.PROXY`); tests use 0 everywhere and read the bound ports back from Envoy's admin API.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..common.errors import ConfigError
from ..common.http import TlsFiles
from ..spec import CleanRoomSpec
from .sidecar import PROXY, SYSTEM_CA_BUNDLE

# A policy is evaluated at `data.envoy.authz.allow` (OPA-Envoy's default decision path); a response
# rule, when the policy defines one, at `data.envoy.authz.response`.
REQUEST_DECISION = "envoy.authz.allow"
RESPONSE_DECISION = "envoy.authz.response"


@dataclass(frozen=True)
class InboundEndpoint:
    """One API the app serves. `policy_source` None means no policy: every request is refused."""

    name: str
    app_port: int
    policy_name: str = ""
    policy_source: str | None = None
    # Filled by the planner: how the request policy is enforced.
    enforcement: Literal["ext_authz", "rbac", "deny"] = "ext_authz"
    rbac_policy: dict[str, Any] | None = None
    needs_body: bool = False
    # Set when Envoy may reuse allowed decisions (see envoy._authz_cache): the request headers that,
    # with method, path and body, determine everything the policy reads.
    authz_cache_headers: tuple[str, ...] | None = None
    inspect_response: bool = False


@dataclass(frozen=True)
class EgressHttpRoute:
    """An allowed HTTP destination. The app speaks plain HTTP to the proxy; with `tls` the proxy opens
    TLS to the upstream, sets SNI to `host` and verifies the certificate against the CA bundle."""

    host: str
    port: int
    tls: bool

    @property
    def authority(self) -> str:
        default = 443 if self.tls else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EgressTcpRoute:
    ip: str
    port: int


@dataclass(frozen=True)
class ProxyModel:
    inbound: tuple[InboundEndpoint, ...]
    inbound_tls: TlsFiles | None
    egress_http: tuple[EgressHttpRoute, ...] = ()
    egress_tcp: tuple[EgressTcpRoute, ...] = ()
    upstream_ca_file: str = SYSTEM_CA_BUNDLE
    # DNS over TCP (spec `egress.dns: tcp`): the app's TCP to any address on port 53 goes to these
    # resolvers instead, so the app cannot choose where its DNS connections go.
    dns_resolvers: tuple[str, ...] = ()
    inbound_address: str = "0.0.0.0"
    inbound_port: int = PROXY.port("inbound")
    egress_address: str = "127.0.0.1"
    egress_http_port: int = PROXY.port("http")
    egress_tcp_port: int = PROXY.port("tcp")
    admin_port: int = PROXY.port("admin")
    app_host: str = "127.0.0.1"
    authz_port: int = PROXY.port("authz")
    extproc_port: int = PROXY.port("extproc")
    max_request_body_bytes: int = 1 << 20
    authz_timeout_s: float = 1.0
    #: skr's port: every inbound endpoint also serves the room's fresh evidence to outside callers (skr's
    #: nonce route alone; None: no evidence route)
    evidence_port: int | None = None

    @property
    def needs_authz(self) -> bool:
        return any(e.enforcement == "ext_authz" for e in self.inbound)

    @property
    def needs_extproc(self) -> bool:
        return any(e.inspect_response for e in self.inbound)


def egress_routes(spec: CleanRoomSpec) -> tuple[tuple[EgressHttpRoute, ...], tuple[EgressTcpRoute, ...]]:
    http: list[EgressHttpRoute] = []
    tcp: list[EgressTcpRoute] = []
    for rule in spec.egress.allow:
        if rule.protocol == "tcp":
            tcp.append(EgressTcpRoute(rule.host, rule.port))  # an IPv4 address: the spec's rule
        else:
            http.append(EgressHttpRoute(rule.host, rule.port, tls=rule.protocol == "https"))
    return tuple(http), tuple(tcp)


def inbound_endpoints(spec: CleanRoomSpec) -> tuple[InboundEndpoint, ...]:
    """The spec's endpoints with the Rego it carries (`policy_rego`): the proxy never reads a policy file, so
    it enforces exactly the text the resolved spec (CCR_SPEC, HOST_DATA) holds, in every rendering."""
    out = []
    for i, endpoint in enumerate(spec.endpoints):
        if endpoint.policy and endpoint.policy_rego is None:
            raise ConfigError(f"endpoints[{i}].policy: the spec carries no Rego for {endpoint.policy} (endpoint "
                              f"{endpoint.name}): load the spec from its file, which inlines it as policy_rego")
        out.append(InboundEndpoint(endpoint.name, endpoint.port, endpoint.policy or "", endpoint.policy_rego))
    return tuple(out)


def system_resolvers(resolv_conf: str | Path = "/etc/resolv.conf") -> tuple[str, ...]:
    """The IPv4 nameservers the proxy itself uses."""
    found = []
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1]).version == 4:
                    found.append(parts[1])
            except ValueError:
                continue
    return tuple(found)


def model_from_spec(spec: CleanRoomSpec, *, inbound_tls: TlsFiles | None,
                    upstream_ca_file: str = SYSTEM_CA_BUNDLE, dns_resolvers: tuple[str, ...] | None = None,
                    **settings: Any) -> ProxyModel:
    """The proxy for `spec`; `settings` override ProxyModel's ports and addresses. With `egress.dns: tcp`
    the app's DNS goes to `dns_resolvers` (default: the proxy's own nameservers)."""
    http, tcp = egress_routes(spec)
    resolvers: tuple[str, ...] = ()
    if spec.egress.dns == "tcp" and spec.egress.allow:
        resolvers = system_resolvers() if dns_resolvers is None else dns_resolvers
        if not resolvers:
            raise ConfigError("egress.dns: tcp needs a resolver, and /etc/resolv.conf names no IPv4 nameserver "
                              "(pass --dns-resolver IP)")
    return ProxyModel(inbound=inbound_endpoints(spec), inbound_tls=inbound_tls, egress_http=http,
                      egress_tcp=tcp, upstream_ca_file=upstream_ca_file, dns_resolvers=resolvers, **settings)
