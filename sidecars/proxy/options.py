"""Command-line options shared by `ccr sidecar run proxy` and `ccr proxy render`. Kept free of heavy
imports: the CLI loads it to build its parser."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..cliargs import add_spec_variable_options, load_spec_from_args
from ..common.room import spec_from_environment
from ..spec import CleanRoomSpec
from .sidecar import PROXY, SYSTEM_CA_BUNDLE

RUN_DIR = "/run/ccr/proxy"
_PORT_OPTIONS = (("inbound_port", "--inbound-port", "inbound"), ("egress_http_port", "--egress-http-port", "http"),
                 ("egress_tcp_port", "--egress-tcp-port", "tcp"), ("admin_port", "--admin-port", "admin"),
                 ("authz_port", "--authz-port", "authz"), ("extproc_port", "--extproc-port", "extproc"))


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """What decides the rendered Envoy configuration (shared by the sidecar and `ccr proxy render`)."""
    parser.add_argument("--spec", metavar="SPEC",
                        help="the clean room spec (YAML; its endpoints' policy files next to it); default: the "
                             "resolved spec in $CCR_SPEC (JSON, the policies' Rego inlined), as a room passes it")
    add_spec_variable_options(parser)
    parser.add_argument("--run-dir", default=RUN_DIR, type=Path, metavar="DIR",
                        help=f"where the rendered configuration, certificates and logs go (default {RUN_DIR})")
    parser.add_argument("--upstream-ca", default=SYSTEM_CA_BUNDLE, metavar="FILE",
                        help="CA bundle that allowed HTTPS upstreams must chain to (default: the system's)")
    parser.add_argument("--certificate-source", choices=("local", "governance"), default="local",
                        help="who endorses the inbound certificate: a CA the room generates (local, the "
                             "default) or the contract CA through the governance sidecar")
    parser.add_argument("--governance-url", help="the governance sidecar, for --certificate-source governance")
    parser.add_argument("--sidecar-token-file", type=Path, metavar="FILE",
                        help="the room's sidecar token: governance endorses the room's TLS name only for it")
    parser.add_argument("--ca-dir", metavar="DIR", type=Path,
                        help="the room CA that issues the inbound certificate (default: RUN_DIR/room-ca)")
    parser.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                        help="a DNS name or IP the inbound certificate is valid for (repeatable; "
                             "default localhost, 127.0.0.1)")
    parser.add_argument("--dns-resolver", action="append", default=None, metavar="IP",
                        help="with egress.dns: tcp, where the app's DNS (TCP port 53) goes (repeatable; "
                             "default: the nameservers in /etc/resolv.conf)")
    parser.add_argument("--no-rbac", action="store_true",
                        help="evaluate every policy in OPA, even those Envoy's RBAC filter could enforce")
    for name, flag, port in _PORT_OPTIONS:
        default = PROXY.port(port)
        parser.add_argument(flag, dest=name, type=int, default=default, help=f"default {default}; 0 = any free port")
    parser.add_argument("--inbound-address", default="0.0.0.0", help="address the inbound listener binds")


def spec_from_args(args: argparse.Namespace) -> CleanRoomSpec:
    """--spec FILE, else the resolved spec in $CCR_SPEC."""
    return load_spec_from_args(args) if args.spec else spec_from_environment(os.environ)


def model_settings(args: argparse.Namespace) -> dict:
    """The ProxyConfig fields `add_model_options` sets (the spec is loaded by the caller)."""
    return {"run_dir": args.run_dir, "upstream_ca": args.upstream_ca, "certificate_source": args.certificate_source,
            "governance_url": args.governance_url, "sidecar_token_file": args.sidecar_token_file,
            "ca_dir": args.ca_dir,
            "tls_names": tuple(args.tls_name) or ("localhost", "127.0.0.1"),
            "dns_resolvers": tuple(args.dns_resolver) if args.dns_resolver else None, "no_rbac": args.no_rbac,
            "inbound_address": args.inbound_address, **{name: getattr(args, name) for name, _, _ in _PORT_OPTIONS}}
