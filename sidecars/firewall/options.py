"""Command-line options shared by `ccr firewall ...` and `ccr sidecar run firewall`."""

from __future__ import annotations

import argparse

from .model import ROOT_UID


def add_placement_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("nftables", "iptables"), default="nftables",
                        help="nftables (default: one inet table, applied atomically) or iptables "
                             "(python-iptables, the legacy x_tables path for hosts without nf_tables)")
    parser.add_argument("--netns", metavar="NAME",
                        help="act in this network namespace (ip netns list); default: the current one")


def add_rule_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exempt-uid", type=int, action="append", metavar="UID",
                        help=f"a sidecar uid the rules do not confine (repeatable; default {ROOT_UID})")
    parser.add_argument("--open-port", type=int, action="append", default=[], metavar="PORT",
                        help="a TCP port that may be reached from outside the room besides the inbound "
                             "proxy's (repeatable), for a sidecar that must be reachable")


def rule_options(args: argparse.Namespace) -> dict:
    return {"exempt_uids": tuple(args.exempt_uid or (ROOT_UID,)), "open_ports": tuple(args.open_port)}
