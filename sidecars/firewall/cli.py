"""`ccr firewall apply|verify|show|clean`: the firewall's rules, by hand."""

from __future__ import annotations

import argparse

from ..cliargs import add_command, add_spec_variable_options, noun
from .options import add_placement_options, add_rule_options

_COMMANDS = "sidecars.firewall.commands"

DESCRIPTION = """\
The firewall is the room's egress firewall. Sockets of every uid except the exempt ones (the sidecars'
uid 0) may only reach the proxy: TCP to allowed destinations is redirected to the proxy's outbound
listeners (HTTP and TCP), other TCP is reset, UDP (DNS too), ICMP, raw IP and IPv6 are dropped. Inbound
connections to the app's endpoint ports are redirected to the proxy's inbound listener (`ccr sidecar list`
shows the ports).
Needs root.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    noun(subparsers, "firewall", "apply, check, show or remove the room's firewall rules", DESCRIPTION,
         formatter_class=argparse.RawDescriptionHelpFormatter, verbs=_verbs)


def _verbs(commands: argparse._SubParsersAction) -> None:
    def command(name: str, help_text: str, handler: str, *, spec: str) -> argparse.ArgumentParser:
        cmd = add_command(commands, name, f"{_COMMANDS}:{handler}", help_text)
        if spec == "required":
            cmd.add_argument("spec", metavar="SPEC", help="clean room spec (YAML)")
        else:
            cmd.add_argument("spec", metavar="SPEC", nargs="?",
                             help="clean room spec (YAML); not needed for this command")
        add_placement_options(cmd)
        if spec == "required":
            add_rule_options(cmd)
            add_spec_variable_options(cmd)
        return cmd

    command("apply", "put the spec's rules in force (atomically with nftables; re-running is harmless)",
            "apply", spec="required")
    command("verify", "check that the rules in force are exactly the spec's; exit 1 naming each difference",
            "verify", spec="required")
    show = command("show", "print the rules in force (or, with --plan SPEC, the rules the spec demands)",
                   "show", spec="optional")
    show.add_argument("--plan", action="store_true", help="print the spec's rules instead; changes nothing")
    add_rule_options(show)
    add_spec_variable_options(show)
    command("clean", "remove our rules (other rules are left alone)", "clean", spec="optional")
