"""`ccr firewall apply|clean|show|verify`: the firewall's rules, by hand."""

from __future__ import annotations

import argparse

from ..cliargs import add_spec_variable_options, load_spec_from_args
from ..room.registry import layout
from .options import add_placement_options, add_rule_options, rule_options

DESCRIPTION = """\
The room's egress firewall. Sockets of every uid except the exempt ones (the sidecars' uid 0) may only
reach the proxy: TCP to allowed destinations is redirected to the proxy's outbound listeners (HTTP and
TCP), other TCP is reset, UDP (DNS too), ICMP, raw IP and IPv6 are dropped. Inbound connections to the
app's endpoint ports are redirected to the proxy's inbound listener (`ccr sidecar list` shows the ports).
Needs root.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("firewall", help="apply, check, show or remove the room's firewall rules",
                            description=DESCRIPTION)
    commands = parser.add_subparsers(dest="firewall_command", metavar="SUBCOMMAND", required=True)

    def command(name: str, help_text: str, func, *, spec: str) -> argparse.ArgumentParser:
        cmd = commands.add_parser(name, help=help_text, description=help_text)
        if spec == "required":
            cmd.add_argument("spec", metavar="SPEC", help="the clean room spec (YAML)")
        else:
            cmd.add_argument("spec", metavar="SPEC", nargs="?",
                             help="the clean room spec (YAML); not needed for this command")
        add_placement_options(cmd)
        if spec == "required":
            add_rule_options(cmd)
            add_spec_variable_options(cmd)
        cmd.set_defaults(func=func)
        return cmd

    command("apply", "put the spec's rules in force (atomically with nftables; re-running is harmless)",
            _apply, spec="required")
    command("verify", "check that the rules in force are exactly the spec's; exit 1 naming each difference",
            _verify, spec="required")
    show = command("show", "print the rules in force (or, with --plan SPEC, the rules the spec demands)",
                   _show, spec="optional")
    show.add_argument("--plan", action="store_true", help="print the spec's rules instead; changes nothing")
    add_rule_options(show)
    add_spec_variable_options(show)
    command("clean", "remove our rules (other rules are left alone)", _clean, spec="optional")


def _firewall(args: argparse.Namespace):
    from . import Firewall

    return Firewall.from_spec(load_spec_from_args(args), layout(), backend=args.backend, netns=args.netns,
                              **rule_options(args))


def _where(args: argparse.Namespace) -> str:
    return f"{args.backend}" + (f", netns {args.netns}" if args.netns else "")


def _apply(args: argparse.Namespace) -> int:
    firewall = _firewall(args)
    elapsed = firewall.apply()
    firewall.require_in_force()
    print(f"applied {len(firewall.ruleset.rules)} rules ({_where(args)}) in {elapsed:.1f} ms")
    return 0


def _verify(args: argparse.Namespace) -> int:
    report = _firewall(args).verify()
    if report.ok:
        print(f"OK: the rules in force are the spec's ({_where(args)})")
        return 0
    print(f"NOT IN FORCE ({_where(args)}):")
    for difference in report.differences:
        print(f"  - {difference}")
    return 1


def _show(args: argparse.Namespace) -> int:
    from . import show_rules

    if args.plan:
        from ..common.errors import ConfigError

        if not args.spec:
            raise ConfigError("show --plan needs the SPEC whose rules to print")
        print(_firewall(args).describe())
        return 0
    print(show_rules(args.backend, args.netns), end="")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from . import clean_rules

    removed = clean_rules(args.backend, args.netns)
    outcome = "removed the firewall rules" if removed else "no firewall rules to remove"
    print(f"{outcome} ({_where(args)})")
    return 0
