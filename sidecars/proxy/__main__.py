"""The proxy sidecar: renders Envoy's configuration from the spec, starts the authorization server, the
response inspector (when a policy judges responses) and Envoy, and serves `GET /status`.

    ccr sidecar run proxy --spec SPEC --run-dir DIR [--endpoints endpoints.json] [--upstream-ca FILE]

In a room it is configured from the room (`sidecar.configure`); these options configure it standalone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from opentelemetry.trace import Tracer

from ..cliargs import run_standalone
from ..common.bodylimit import NO_BODY_BYTES
from ..common.http import create_app, plain_error_body, serve
from ..common.logs import configure_logging
from ..common.otel import attach_parent_from_env, setup_telemetry, step_span
from ..common.room import read_sidecar_token
from ..common.roomcerts import ROOM_TLS_COMMON_NAME
from .certs import CertificateSource, GovernanceCertificateSource, LocalCASource, RoomCertificate
from .engines import ENGINES
from .model import ProxyModel, model_from_spec
from .options import add_model_options, model_settings, spec_from_args
from .runtime import ProxyRuntime, plan
from .sidecar import PROXY, ProxyConfig

log = logging.getLogger("sidecars.proxy")


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
    parser.add_argument("--status-port", type=int, default=PROXY.port("status"), help="GET /status on 127.0.0.1")
    parser.add_argument("--ready-file", type=Path,
                        help="written once everything is up: JSON {status_port, ports, ca_file}")
    return parser


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    return ProxyConfig(spec=spec_from_args(args), engine=args.engine, opa_url=args.opa_url,
                       authz_workers=args.authz_workers, envoy_concurrency=args.envoy_concurrency,
                       status_port=args.status_port, ready_file=args.ready_file, **model_settings(args))


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("proxy", build_parser(), config_from_args, run, argv)


def planned_model(config: ProxyConfig) -> tuple[ProxyModel, RoomCertificate | None]:
    """The spec's proxy with each endpoint's enforcement chosen, and the room certificate it serves."""
    spec = config.spec
    config.run_dir.mkdir(parents=True, exist_ok=True)
    certificate = None
    if spec.endpoints:
        token = read_sidecar_token(config.sidecar_token_file)
        source: CertificateSource = (GovernanceCertificateSource(config.governance_url, token=token)
                                     if config.certificate_source == "governance"
                                     else LocalCASource(config.ca_dir or config.run_dir / "room-ca"))
        certificate = source.issue(ROOM_TLS_COMMON_NAME, list(config.tls_names), config.run_dir / "tls")
    model = model_from_spec(
        spec, inbound_tls=certificate.tls if certificate else None, upstream_ca_file=config.upstream_ca,
        dns_resolvers=config.dns_resolvers, inbound_address=config.inbound_address,
        inbound_port=config.inbound_port, egress_http_port=config.egress_http_port,
        egress_tcp_port=config.egress_tcp_port, admin_port=config.admin_port, authz_port=config.authz_port,
        extproc_port=config.extproc_port, evidence_port=config.evidence_port)
    return plan(model, use_rbac=not config.no_rbac), certificate


def run(config: ProxyConfig) -> int:
    configure_logging()
    attach_parent_from_env()
    telemetry = setup_telemetry("ccr-proxy")
    try:
        return _run(config, telemetry.tracer)
    finally:
        telemetry.shutdown()


def _run(config: ProxyConfig, tracer: Tracer) -> int:
    with step_span(tracer, "proxy render"):
        model, certificate = planned_model(config)
    runtime = ProxyRuntime(model, config.run_dir, engine=config.engine, opa_url=config.opa_url,
                           authz_workers=config.authz_workers, envoy_concurrency=config.envoy_concurrency)
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
        app = create_app("ccr proxy", error_body=plain_error_body, max_body_bytes=NO_BODY_BYTES, lifespan=lifespan)

        @app.get("/status")
        def status() -> dict[str, Any]:
            report = runtime.status()
            healthy = all(report[p] in ("running", "not needed") for p in ("envoy", "authz", "extproc"))
            return {"status": "ok" if healthy else "failed",
                    "ca_file": certificate.ca_file if certificate else None, **report}

        def ready(port: int) -> None:
            log.info("proxy ready: %s; status on 127.0.0.1:%d", runtime.ports, port)
            if config.ready_file:
                config.ready_file.write_text(json.dumps({
                    "status_port": port, "ports": runtime.ports.__dict__ if runtime.ports else None,
                    "ca_file": certificate.ca_file if certificate else None}))

        serve(app, "127.0.0.1", config.status_port, on_ready=ready)
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
