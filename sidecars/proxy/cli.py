"""`ccr proxy render`: the proxy's Envoy configuration for a spec, validated by Envoy, without running it."""

from __future__ import annotations

import argparse

from .options import add_model_options, model_settings, spec_from_args


def register(subparsers) -> None:
    proxy = subparsers.add_parser("proxy", help="the proxy sidecar's configuration")
    sub = proxy.add_subparsers(dest="proxy_command", metavar="SUBCOMMAND", required=True)
    render = sub.add_parser("render", help="render Envoy's configuration for a spec and check it with envoy",
                            description="Writes Envoy's bootstrap for the spec (checked with `envoy --mode "
                                        "validate`) and prints how each endpoint's policy is enforced.")
    add_model_options(render)
    render.add_argument("--out", required=True, metavar="FILE", help="where to write the bootstrap (JSON)")
    render.set_defaults(func=_cmd_render)


def _cmd_render(args: argparse.Namespace) -> int:
    from .__main__ import planned_model
    from .envoy import validate_bootstrap, write_bootstrap
    from .sidecar import PROXY, ProxyConfig

    config = ProxyConfig(spec=spec_from_args(args), status_port=PROXY.port("status"), **model_settings(args))
    model, certificate = planned_model(config)
    validate_bootstrap(write_bootstrap(model, args.out))
    for endpoint in model.inbound:
        extra = " + response inspection" if endpoint.inspect_response else ""
        body = " (request body sent to the policy)" if endpoint.needs_body else ""
        print(f"endpoint {endpoint.name} (app port {endpoint.app_port}): {endpoint.enforcement}{extra}{body}")
    print(f"egress: {len(model.egress_http)} HTTP host(s), {len(model.egress_tcp)} TCP address(es)")
    if certificate:
        print(f"room CA (clients trust this): {certificate.ca_file}")
    print(f"wrote {args.out} (valid for envoy)")
    return 0
