"""The handlers of `ccr firewall ...` (registered in cli.py)."""

from __future__ import annotations

import argparse

from ..cliargs import load_spec_from_args
from ..common.errors import ConfigError
from ..room.registry import layout
from . import Firewall, clean_rules, show_rules
from .options import rule_options


def _firewall(args: argparse.Namespace) -> Firewall:
    return Firewall.from_spec(load_spec_from_args(args), layout(), backend=args.backend, netns=args.netns,
                              **rule_options(args))


def _where(args: argparse.Namespace) -> str:
    return f"{args.backend}" + (f", netns {args.netns}" if args.netns else "")


def apply(args: argparse.Namespace) -> int:
    firewall = _firewall(args)
    elapsed = firewall.apply()
    firewall.require_in_force()
    print(f"applied {len(firewall.ruleset.rules)} rules ({_where(args)}) in {elapsed:.1f} ms")
    return 0


def verify(args: argparse.Namespace) -> int:
    report = _firewall(args).verify()
    if report.ok:
        print(f"OK: the rules in force are the spec's ({_where(args)})")
        return 0
    print(f"NOT IN FORCE ({_where(args)}):")
    for difference in report.differences:
        print(f"  - {difference}")
    return 1


def show(args: argparse.Namespace) -> int:
    if args.plan:
        if not args.spec:
            raise ConfigError("show --plan needs the SPEC whose rules to print")
        print(_firewall(args).describe())
        return 0
    print(show_rules(args.backend, args.netns), end="")
    return 0


def clean(args: argparse.Namespace) -> int:
    removed = clean_rules(args.backend, args.netns)
    outcome = "removed the firewall rules" if removed else "no firewall rules to remove"
    print(f"{outcome} ({_where(args)})")
    return 0
