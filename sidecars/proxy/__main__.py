"""The proxy sidecar: renders Envoy's configuration from the spec, starts the authorization server, the
response inspector (when a policy judges responses) and Envoy, and serves `GET /status`.

    ccr sidecar run proxy --spec SPEC --run-dir DIR [--endpoints endpoints.json] [--upstream-ca FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.trace import Tracer

from ..common.errors import CcrError, ConfigError
from ..common.http import create_app, plain_error_body, serve
from ..common.logs import configure_logging
from ..common.otel import attach_parent_from_env, setup_telemetry, step_span
from ..spec import CleanRoomSpec, parse_spec
from .certs import CertificateSource, GovernanceCertificateSource, LocalCASource, RoomCertificate
from .engines import ENGINES
from .model import ProxyModel, model_from_spec
from .options import add_model_options
from .runtime import ProxyRuntime, plan

log = logging.getLogger("sidecars.proxy")
STATUS_PORT = 15020


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccr sidecar run proxy",
        description="Envoy in front of the app (TLS 1.3 + the API policy on every request and response) and "
                    "behind it (egress only to the contract's allow-list, upstream TLS verified).")
    add_model_options(parser)
    parser.add_argument("--engine", choices=ENGINES, default="opa",
                        help="Rego engine: the embedded OPA (default), regopy, or an external OPA server")
    parser.add_argument("--opa-url", help="the external OPA server, for --engine opa-server")
    parser.add_argument("--authz-workers", type=int, default=2, help="authorization server processes")
    parser.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy worker threads")
    parser.add_argument("--status-port", type=int, default=STATUS_PORT, help="GET /status on 127.0.0.1")
    parser.add_argument("--ready-file", metavar="FILE",
                        help="written once everything is up: JSON {status_port, ports, ca_file}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    attach_parent_from_env()
    telemetry = setup_telemetry("ccr-proxy")
    try:
        return run(args, telemetry.tracer)
    except CcrError as exc:
        print(f"ccr sidecar run proxy: error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        telemetry.shutdown()


def load_proxy_spec(args: argparse.Namespace) -> CleanRoomSpec:
    """The spec from --spec, else from $CCR_SPEC (the resolved spec: its policies' Rego inlined)."""
    from ..cliargs import load_spec_from_args, spec_variables

    if args.spec:
        return load_spec_from_args(args)
    text = os.environ.get("CCR_SPEC")
    if not text:
        raise ConfigError("no spec: pass --spec FILE or set CCR_SPEC to the resolved spec (JSON)")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"CCR_SPEC: not valid YAML/JSON: {exc}") from None
    return parse_spec(data, source="CCR_SPEC", variables=spec_variables(args))


def planned_model(args: argparse.Namespace) -> tuple[ProxyModel, RoomCertificate | None]:
    """The spec's proxy with each endpoint's enforcement chosen, and the room certificate it serves."""
    spec = load_proxy_spec(args)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    certificate = None
    if spec.endpoints:
        source: CertificateSource = (GovernanceCertificateSource(args.governance_url)
                                     if args.certificate_source == "governance"
                                     else LocalCASource(args.ca_dir or run_dir / "room-ca"))
        certificate = source.issue("room", args.tls_name or ["localhost", "127.0.0.1"], run_dir / "tls")
    model = model_from_spec(
        spec, inbound_tls=certificate.tls if certificate else None,
        upstream_ca_file=args.upstream_ca,
        dns_resolvers=tuple(args.dns_resolver) if args.dns_resolver else None,
        inbound_address=args.inbound_address, inbound_port=args.inbound_port,
        egress_http_port=args.egress_http_port, egress_tcp_port=args.egress_tcp_port, admin_port=args.admin_port,
        authz_port=args.authz_port, extproc_port=args.extproc_port)
    return plan(model, use_rbac=not args.no_rbac), certificate


def run(args: argparse.Namespace, tracer: Tracer) -> int:
    with step_span(tracer, "proxy render"):
        model, certificate = planned_model(args)
    run_dir = Path(args.run_dir)
    runtime = ProxyRuntime(model, run_dir, engine=args.engine, opa_url=args.opa_url,
                           authz_workers=args.authz_workers, envoy_concurrency=args.envoy_concurrency)
    print(f"proxy: starting Envoy for {len(model.inbound)} endpoint(s), {len(model.egress_http)} HTTP and "
          f"{len(model.egress_tcp)} TCP egress rule(s)", file=sys.stderr, flush=True)
    with step_span(tracer, "proxy start", endpoints=len(model.inbound), egress_rules=len(model.egress_http)
                   + len(model.egress_tcp)):
        runtime.start()

    @asynccontextmanager
    async def lifespan(_app) -> AsyncIterator[None]:
        yield
        # uvicorn re-raises SIGTERM once it has shut down, so stop the processes here, not after serve().
        runtime.stop()

    try:
        app = create_app("ccr proxy", error_body=plain_error_body, lifespan=lifespan)

        @app.get("/status")
        def status() -> dict[str, Any]:
            report = runtime.status()
            healthy = all(report[p] in ("running", "not needed") for p in ("envoy", "authz", "extproc"))
            return {"status": "ok" if healthy else "failed",
                    "ca_file": certificate.ca_file if certificate else None, **report}

        def ready(port: int) -> None:
            log.info("proxy ready: %s; status on 127.0.0.1:%d", runtime.ports, port)
            if args.ready_file:
                Path(args.ready_file).write_text(json.dumps({
                    "status_port": port, "ports": runtime.ports.__dict__ if runtime.ports else None,
                    "ca_file": certificate.ca_file if certificate else None}))

        serve(app, "127.0.0.1", args.status_port, on_ready=ready)
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
