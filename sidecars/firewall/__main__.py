"""`ccr sidecar run firewall`: put the room's rules in force, then answer whether they still are.

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

from fastapi.responses import JSONResponse

from ..cliargs import add_spec_variable_options, load_spec_from_args
from ..common.errors import CcrError
from ..common.http import azure_error_body, create_app, serve
from ..common.logs import configure_logging
from ..common.otel import setup_telemetry
from . import Firewall, FirewallNotInForce
from .options import add_placement_options, add_rule_options, rule_options

DEFAULT_PORT = 8296
log = logging.getLogger("ccr.firewall")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccr sidecar run firewall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, metavar="FILE", help="the clean room spec (YAML)")
    add_spec_variable_options(parser)
    add_placement_options(parser)
    add_rule_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address of the status API (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port of the status API (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--ready-file", metavar="FILE",
                        help='written once the API listens: {"port": N, "url": "http://HOST:N"}')
    return parser


def create_firewall_app(firewall: Firewall, applied_ms: float):
    app = create_app("ccr firewall sidecar", error_body=azure_error_body)

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    telemetry = setup_telemetry("ccr-firewall")
    try:
        firewall = Firewall.from_spec(load_spec_from_args(args), backend=args.backend, netns=args.netns,
                                      **rule_options(args))
        applied_ms = firewall.apply()
        firewall.require_in_force()
    except CcrError as exc:
        print(f"ccr sidecar run firewall: error: {exc}", file=sys.stderr)
        telemetry.shutdown()
        return 1
    log.info("firewall rules in force (%s, %d rules, %.1f ms)", args.backend, len(firewall.ruleset.rules),
             applied_ms)

    try:
        serve(create_firewall_app(firewall, applied_ms), args.host, args.port, ready_file=args.ready_file)
    finally:
        telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
