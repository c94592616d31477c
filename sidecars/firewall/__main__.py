"""`ccr sidecar firewall`: put the room's rules in force, then answer whether they still are.

Rules are applied before the API listens, and an apply that fails ends the sidecar (exit 1): nothing
may start in a room without its firewall. On exit the rules stay in force (fail closed); `ccr firewall
clean` removes them.

API (plain HTTP, bind it to loopback):
  GET  /status  → 200 {status: "enforced" | "not-in-force", backend, netns, rules, applied_ms, differences}
  POST /verify  → 200 {ok: true, backend, netns, differences: []}
                  409 {error: {code: "FirewallNotInForce", message}, differences: [...]}
The launcher calls POST /verify before it starts the app.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fastapi.responses import JSONResponse

from ..cliargs import add_listen_options, add_spec_variable_options, load_spec_from_args, run_standalone
from ..common.bodylimit import NO_BODY_BYTES
from ..common.http import azure_error_body, create_app, serve
from ..common.logs import configure_logging
from ..common.otel import setup_telemetry
from ..room.registry import layout
from . import Firewall, FirewallNotInForce
from .netns import local_addresses
from .options import add_placement_options, add_rule_options, rule_options
from .sidecar import FIREWALL, FirewallSidecarConfig

log = logging.getLogger("ccr.firewall")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccr sidecar run firewall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, metavar="FILE", help="the clean room spec (YAML)")
    add_spec_variable_options(parser)
    add_placement_options(parser)
    add_rule_options(parser)
    add_listen_options(parser, FIREWALL.port())
    return parser


def config_from_args(args: argparse.Namespace) -> FirewallSidecarConfig:
    return FirewallSidecarConfig(spec=load_spec_from_args(args), layout=layout(), port=args.port,
                                 backend=args.backend, netns=args.netns, host=args.host,
                                 ready_file=args.ready_file, **rule_options(args))


def create_firewall_app(firewall: Firewall, applied_ms: float):
    app = create_app("ccr firewall sidecar", error_body=azure_error_body, max_body_bytes=NO_BODY_BYTES)

    @app.get("/status")
    def status() -> dict:
        report = firewall.verify()
        return {"status": "enforced" if report.ok else "not-in-force", "backend": firewall.backend,
                "netns": firewall.netns, "rules": len(firewall.ruleset.rules),
                "applied_ms": round(applied_ms, 3), "differences": report.differences}

    @app.post("/verify")
    def verify():
        report = firewall.verify()
        if report.ok:
            return report.to_json()
        error = FirewallNotInForce(report.differences)
        log.error("%s", error)
        return JSONResponse({**azure_error_body(error), "differences": report.differences},
                            status_code=error.http_status)

    return app


def run(config: FirewallSidecarConfig) -> int:
    configure_logging()
    telemetry = setup_telemetry("ccr-firewall")
    try:
        own = tuple(sorted({*config.room_addresses, *local_addresses(config.netns)}))
        firewall = Firewall.from_spec(config.spec, config.layout, backend=config.backend, netns=config.netns,
                                      exempt_uids=config.exempt_uids, open_ports=config.open_ports,
                                      room_addresses=own)
        applied_ms = firewall.apply()
        firewall.require_in_force()
        log.info("firewall rules in force (%s, %d rules, %.1f ms)", config.backend, len(firewall.ruleset.rules),
                 applied_ms)
        serve(create_firewall_app(firewall, applied_ms), config.host, config.port, ready_file=config.ready_file)
    finally:
        telemetry.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("firewall", build_parser(), config_from_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
