"""Command-line options shared by `ccr sidecar run proxy` and `ccr proxy render`, and the room's default
ports (ARCHITECTURE §4). Kept free of heavy imports: the CLI loads it to build its parser."""

from __future__ import annotations

import argparse
import os

INBOUND_PORT = 15001
EGRESS_HTTP_PORT = 15002
EGRESS_TCP_PORT = 15003
ADMIN_PORT = 15000
AUTHZ_PORT = 15010
EXTPROC_PORT = 15011
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
RUN_DIR = "/run/ccr/proxy"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """What decides the rendered Envoy configuration (shared by the sidecar and `ccr proxy render`)."""
    from ..cliargs import add_spec_variable_options

    parser.add_argument("--spec", metavar="SPEC",
                        help="the clean room spec (YAML; its endpoints' policy files next to it); default: the "
                             "resolved spec in $CCR_SPEC (JSON, the policies' Rego inlined), as the container "
                             "group passes it")
    add_spec_variable_options(parser)
    parser.add_argument("--run-dir", default=RUN_DIR, metavar="DIR",
                        help=f"where the rendered configuration, certificates and logs go (default {RUN_DIR})")
    parser.add_argument("--upstream-ca", default=SYSTEM_CA_BUNDLE, metavar="FILE",
                        help="CA bundle that allowed HTTPS upstreams must chain to (default: the system's)")
    parser.add_argument("--certificate-source", choices=("local", "governance"), default="local",
                        help="who endorses the inbound certificate: a CA the room generates (local, the "
                             "default) or the contract CA through the governance sidecar")
    parser.add_argument("--governance-url", default=os.environ.get("CCR_GOVERNANCE_URL", "http://127.0.0.1:8300"),
                        help="the governance sidecar, for --certificate-source governance")
    parser.add_argument("--ca-dir", metavar="DIR",
                        help="the room CA that issues the inbound certificate (default: RUN_DIR/room-ca)")
    parser.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                        help="a DNS name or IP the inbound certificate is valid for (repeatable; "
                             "default localhost, 127.0.0.1)")
    parser.add_argument("--dns-resolver", action="append", default=None, metavar="IP",
                        help="with egress.dns: tcp, where the app's DNS (TCP port 53) goes (repeatable; "
                             "default: the nameservers in /etc/resolv.conf)")
    parser.add_argument("--no-rbac", action="store_true",
                        help="evaluate every policy in OPA, even those Envoy's RBAC filter could enforce")
    for name, flag, default in (("inbound_port", "--inbound-port", INBOUND_PORT),
                                ("egress_http_port", "--egress-http-port", EGRESS_HTTP_PORT),
                                ("egress_tcp_port", "--egress-tcp-port", EGRESS_TCP_PORT),
                                ("admin_port", "--admin-port", ADMIN_PORT),
                                ("authz_port", "--authz-port", AUTHZ_PORT),
                                ("extproc_port", "--extproc-port", EXTPROC_PORT)):
        parser.add_argument(flag, dest=name, type=int, default=default, help=f"default {default}; 0 = any free port")
    parser.add_argument("--inbound-address", default="0.0.0.0", help="address the inbound listener binds")
