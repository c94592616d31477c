"""The handler of `ccr proxy render` (registered in cli.py)."""

from __future__ import annotations

import argparse

from .__main__ import planned_model
from .envoy import validate_bootstrap, write_bootstrap
from .options import model_settings, spec_from_args
from .sidecar import PROXY, ProxyConfig


def render(args: argparse.Namespace) -> int:
    config = ProxyConfig(spec=spec_from_args(args), status_port=PROXY.port("status"), **model_settings(args))
    model, certificate = planned_model(config)
    validate_bootstrap(write_bootstrap(model, args.output))
    for endpoint in model.inbound:
        extra = " + response inspection" if endpoint.inspect_response else ""
        body = " (request body sent to the policy)" if endpoint.needs_body else ""
        cache = "" if endpoint.authz_cache_headers is None else \
            f" (allows cached in Envoy, keyed on method, path, body, {', '.join(endpoint.authz_cache_headers)})"
        print(f"endpoint {endpoint.name} (app port {endpoint.app_port}): {endpoint.enforcement}{extra}{body}{cache}")
    print(f"egress: {len(model.egress_http)} HTTP host(s), {len(model.egress_tcp)} TCP address(es)")
    if certificate and certificate.ca_file:
        print(f"room CA (clients trust this): {certificate.ca_file}")
    elif certificate:
        print("room certificate endorsed by the contract CA (clients trust it: `ccr governance ca show`)")
    print(f"wrote {args.output} (valid for envoy)")
    return 0
