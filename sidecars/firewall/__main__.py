"""`ccr sidecar run firewall`: the room's init container. It puts the rules in force, checks them as the
kernel holds them, writes its ready file and exits 0 (an apply or check that fails: exit 1, and nothing may
start in the room). The rules outlive it in the network namespace's kernel tables (fail closed); `ccr
firewall clean` removes them.

One model everywhere: on Confidential ACI and Kubernetes it is an init container; `ccr room up` and compose
run it to completion before the other sidecars too. Whoever checks the rules later reads them from the kernel,
not from this process: the launcher runs `python -m sidecars.firewall verify` in the group's network
namespace before it starts the app, which derives the same rules from the same room (CCR_SPEC and the
placement in its environment) and exits 1 naming each difference.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from ..cliargs import add_listen_options, add_spec_variable_options, load_spec_from_args, run_standalone
from ..common.errors import CcrError
from ..common.logs import configure_logging
from ..common.otel import setup_telemetry
from ..common.process import write_ready_file
from ..common.room import Room
from ..room.registry import layout
from . import Firewall, FirewallNotInForce
from .netns import local_addresses
from .options import add_placement_options, add_rule_options, rule_options
from .sidecar import FIREWALL, FirewallSidecarConfig, configure

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


def firewall_for(config: FirewallSidecarConfig) -> Firewall:
    """The room's rules: the spec's, with the namespace's own addresses (read here, in the namespace) refused
    as egress destinations. The sidecar and the launcher's check derive them alike."""
    own = tuple(sorted({*config.room_addresses, *local_addresses(config.netns)}))
    return Firewall.from_spec(config.spec, config.layout, backend=config.backend, netns=config.netns,
                              exempt_uids=config.exempt_uids, open_ports=config.open_ports, room_addresses=own)


def run(config: FirewallSidecarConfig) -> int:
    """Apply, check from the kernel, write the ready file, exit 0."""
    configure_logging()
    telemetry = setup_telemetry("ccr-firewall")
    try:
        firewall = firewall_for(config)
        applied_ms = firewall.apply()
        firewall.require_in_force()
        log.info("firewall rules in force (%s, %d rules, %.1f ms); the init container is done", config.backend,
                 len(firewall.ruleset.rules), applied_ms)
        if config.ready_file is not None:
            write_ready_file(config.ready_file, config.port, status="enforced", backend=config.backend,
                             rules=len(firewall.ruleset.rules), applied_ms=round(applied_ms, 3))
    finally:
        telemetry.shutdown()
    return 0


def verify_in_room(environ: Mapping[str, str] | None = None) -> int:
    """`python -m sidecars.firewall verify`: are the rules in this network namespace's kernel tables exactly
    the room's? The room comes from the environment, as the firewall sidecar's did. Exit 0 (in force), 1
    (naming each difference) or 2 (no room to check against)."""
    configure_logging()
    try:
        room = Room.from_environment(os.environ if environ is None else environ, layout())
        report = firewall_for(configure(room)).verify()
    except CcrError as exc:
        print(f"ccr firewall verify: {exc}", file=sys.stderr)
        return 2
    if report.ok:
        print(json.dumps(report.to_json()))
        return 0
    print(json.dumps(report.to_json()))
    print(f"ccr firewall verify: {FirewallNotInForce(report.differences)}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("firewall", build_parser(), config_from_args, run, argv)


if __name__ == "__main__":
    sys.exit(verify_in_room() if sys.argv[1:] == ["verify"] else main())
