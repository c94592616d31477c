"""python-iptables backend: the legacy x_tables path, for hosts without nf_tables.

python-iptables drives libiptc, i.e. the legacy x_tables tables (its rules are invisible to the
nf_tables-based `iptables`/`nft`; inspect them with `iptables-legacy-save`). IPv4 and IPv6 are separate
tables (`Table` / `Table6`). Our rules live in our own chains, jumped to from the first position of the
built-in chains; each table is replaced in one commit (x_tables swaps the whole table), so an apply is
four commits: both filter tables first, then both nat tables, so the confining rules are in force before
any redirect exists (a failure in between leaves the room more closed, never more open). Each rule
carries the comment `ccr:<rule id>`.

Confinement in the output chains starts with: exempt uids return, and packets that no process owns
return, so only sockets of non-exempt uids meet the rules (as with nftables' `meta skuid`).

Changes take the xtables lock (/run/xtables.lock, as the iptables tools do), so an `iptables-legacy`
run at the same moment cannot lose our commit or have its own lost.

python-iptables caches one libiptc handle per table name, process-wide, bound to the namespace it was
opened in, and building any rule consults every cached table of the family. So every operation, under
one lock, first refreshes all of them in the calling thread's namespace, and never closes them (a
closed cached handle crashes the next rule built).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

try:
    import iptc

    _IPTC_MISSING = ""
except Exception as exc:  # not installed, or libiptc/libxtables missing: python-iptables fails at import
    iptc = None
    _IPTC_MISSING = str(exc)

from ..common.errors import ConfigError
from .model import MAX_UID, Family, Hook, Protocol, Rule, RuleSet, Verdict

COMMENT_PREFIX = "ccr:"
XTABLES_LOCK = "/run/xtables.lock"
_lock = threading.Lock()


@contextmanager
def _xtables_lock() -> Iterator[None]:
    fd = os.open(XTABLES_LOCK, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Placement:
    table: str
    builtin: str
    chain: str


PLACEMENTS: dict[Hook, Placement] = {
    Hook.FILTER_OUTPUT: Placement("filter", "OUTPUT", "CCR-OUTPUT"),
    Hook.FILTER_INPUT: Placement("filter", "INPUT", "CCR-INPUT"),
    Hook.NAT_OUTPUT: Placement("nat", "OUTPUT", "CCR-NAT-OUTPUT"),
    Hook.NAT_PREROUTING: Placement("nat", "PREROUTING", "CCR-PREROUTING"),
}
TABLES = ("filter", "nat")  # commit order


@dataclass(frozen=True)
class XtRule:
    """One x_tables rule: basic fields, matches in order, target."""

    id: str
    protocol: str | None = None
    dst: str | None = None
    in_interface: str | None = None
    matches: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    target: str = "ACCEPT"
    target_params: tuple[tuple[str, str], ...] = field(default=())


def _ports(ports: tuple[int, ...]) -> str:
    return ",".join(map(str, ports))


def xt_rules(rule: Rule, ipv6: bool) -> list[XtRule]:
    """The model rule for one family (empty when the rule is for the other family)."""
    if rule.family is (Family.IPV4 if ipv6 else Family.IPV6):
        return []
    matches: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    protocol = None
    if rule.protocol is Protocol.TCP:
        protocol = "tcp"
        tcp: list[tuple[str, str]] = []
        if len(rule.sports) == 1:
            tcp.append(("sport", str(rule.sports[0])))
        if len(rule.dports) == 1:
            tcp.append(("dport", str(rule.dports[0])))
        if rule.dport_range:
            tcp.append(("dport", f"{rule.dport_range[0]}:{rule.dport_range[1]}"))
        matches.append(("tcp", tuple(tcp)))
        multi: list[tuple[str, str]] = []
        if len(rule.sports) > 1:
            multi.append(("sports", _ports(rule.sports)))
        if len(rule.dports) > 1:
            multi.append(("dports", _ports(rule.dports)))
        if multi:
            matches.append(("multiport", tuple(multi)))
    elif rule.protocol is Protocol.ICMP:
        protocol = "icmpv6" if ipv6 else "icmp"
    if rule.established:
        matches.append(("conntrack", (("ctstate", "RELATED,ESTABLISHED"),)))
    matches.append(("comment", (("comment", COMMENT_PREFIX + rule.id),)))
    target, params = {
        Verdict.ACCEPT: ("ACCEPT", ()),
        Verdict.DROP: ("DROP", ()),
        Verdict.RESET: ("REJECT", (("reject-with", "tcp-reset"),)),
        Verdict.REDIRECT: ("REDIRECT", (("to-ports", str(rule.to_port)),)),
    }[rule.verdict]
    return [XtRule(rule.id, protocol, rule.daddr, "lo" if rule.from_loopback else None, tuple(matches),
                   target, params)]


def chain_prelude(exempt_uids: tuple[int, ...]) -> list[XtRule]:
    """Output chains: what is not a confined socket returns before the rules."""
    rules = [XtRule(f"exempt-uid-{uid}", matches=(("owner", (("uid-owner", str(uid)),)),
                                                    ("comment", (("comment", f"{COMMENT_PREFIX}exempt-uid-{uid}"),))),
                    target="RETURN") for uid in exempt_uids]
    # Packets without an owning process (no socket, or a kernel socket such as IPv6 neighbour discovery's)
    # fail every uid match; inverted, a match on all uids returns exactly them. ("!" negates in
    # python-iptables.)
    rules.append(XtRule("no-owner", matches=(("owner", (("uid-owner", f"!0-{MAX_UID}"),)),
                                               ("comment", (("comment", f"{COMMENT_PREFIX}no-owner"),))),
                        target="RETURN"))
    return rules


def chain_rules(ruleset: RuleSet, hook: Hook, ipv6: bool) -> list[XtRule]:
    rules = chain_prelude(ruleset.config.exempt_uids) if hook.confined else []
    for rule in ruleset.in_hook(hook):
        rules += xt_rules(rule, ipv6)
    return rules


def jump_rule(placement: Placement) -> XtRule:
    return XtRule(f"jump-{placement.chain}",
                  matches=(("comment", (("comment", f"{COMMENT_PREFIX}jump-{placement.chain}"),)),),
                  target=placement.chain)


class IptablesBackend:
    name = "iptables"

    def __init__(self) -> None:
        if iptc is None:
            raise ConfigError(f"the iptables backend cannot load python-iptables ({_IPTC_MISSING}); make setup "
                              "installs it")
        self._iptc = iptc

    def _enter_namespace(self) -> None:
        """Point every cached libiptc handle at the calling thread's namespace."""
        for cls, available in ((self._iptc.Table, self._iptc.is_table_available),
                               (self._iptc.Table6, self._iptc.is_table6_available)):
            for name in cls.ALL:
                try:
                    if available(name):
                        cls(name).refresh()
                except self._iptc.IPTCError as exc:
                    family = "IPv6" if cls is self._iptc.Table6 else "IPv4"
                    raise ConfigError(f"cannot open the legacy {family} {name} table: {exc} "
                                      "(is the ip_tables/ip6_tables module available?)") from exc

    def _table(self, name: str, ipv6: bool):
        table = (self._iptc.Table6 if ipv6 else self._iptc.Table)(name)
        table.autocommit = False
        return table

    def _build(self, xt: XtRule, ipv6: bool):
        iptc = self._iptc
        rule = iptc.Rule6() if ipv6 else iptc.Rule()
        if xt.protocol:
            rule.protocol = xt.protocol
        if xt.dst:
            rule.dst = xt.dst
        if xt.in_interface:
            rule.in_interface = xt.in_interface
        for name, params in xt.matches:
            match = rule.create_match(name)
            for key, value in params:
                match.set_parameter(key, value)
        target = rule.create_target(xt.target)
        for key, value in xt.target_params:
            target.set_parameter(key, value)
        return rule

    def _decode(self, rule, ipv6: bool) -> dict[str, Any]:
        decoded = self._iptc.easy.decode_iptc_rule(rule, ipv6)
        decoded.pop("counters", None)
        return decoded

    def apply(self, ruleset: RuleSet) -> None:
        with _lock, _xtables_lock():
            self._enter_namespace()
            for table_name in TABLES:
                for ipv6 in (False, True):
                    self._apply_table(ruleset, table_name, ipv6)

    def _apply_table(self, ruleset: RuleSet, table_name: str, ipv6: bool) -> None:
        iptc = self._iptc
        table = self._table(table_name, ipv6)
        try:
            for hook, placement in PLACEMENTS.items():
                if placement.table != table_name:
                    continue
                if table.is_chain(placement.chain):
                    table.flush_entries(placement.chain)
                else:
                    table.create_chain(placement.chain)
                chain = iptc.Chain(table, placement.chain)
                for xt in chain_rules(ruleset, hook, ipv6):
                    chain.append_rule(self._build(xt, ipv6))
                builtin = iptc.Chain(table, placement.builtin)
                for existing in list(builtin.rules):
                    if existing.target and existing.target.name == placement.chain:
                        builtin.delete_rule(existing)
                builtin.insert_rule(self._build(jump_rule(placement), ipv6))
            table.commit()
        except iptc.IPTCError as exc:
            table.refresh()  # drop the half-built, uncommitted changes
            raise ConfigError(f"x_tables refused the {table_name} rules: {exc}") from exc

    def clean(self) -> bool:
        removed = False
        with _lock, _xtables_lock():
            self._enter_namespace()
            for ipv6 in (False, True):
                for table_name in reversed(TABLES):
                    table = self._table(table_name, ipv6)
                    for placement in PLACEMENTS.values():
                        if placement.table != table_name or not table.is_chain(placement.chain):
                            continue
                        builtin = self._iptc.Chain(table, placement.builtin)
                        for existing in list(builtin.rules):
                            if existing.target and existing.target.name == placement.chain:
                                builtin.delete_rule(existing)
                        table.flush_entries(placement.chain)
                        table.delete_chain(placement.chain)
                        removed = True
                    table.commit()
        return removed

    def _installed(self, ipv6: bool) -> dict[str, list]:
        """Per chain (ours and the built-ins we jump from): the installed rules, decoded."""
        found: dict[str, list] = {}
        for table_name in TABLES:
            table = self._table(table_name, ipv6)
            for placement in PLACEMENTS.values():
                if placement.table != table_name:
                    continue
                for name in (placement.builtin, placement.chain):
                    if table.is_chain(name):
                        found[f"{table_name}/{name}"] = [self._decode(r, ipv6)
                                                         for r in self._iptc.Chain(table, name).rules]
        return found

    def show(self) -> str:
        lines: list[str] = []
        with _lock:
            self._enter_namespace()
            for ipv6 in (False, True):
                lines.append("# IPv6 (ip6tables-legacy)" if ipv6 else "# IPv4 (iptables-legacy)")
                installed = self._installed(ipv6)
                if not any(k.split("/")[1].startswith("CCR-") for k in installed):
                    lines.append("no ccr chains: no firewall rules in force")
                for key, rules in installed.items():
                    table_name, chain = key.split("/")
                    for decoded in rules:
                        lines.append(f"-t {table_name} -A {chain} {format_rule(decoded)}")
        return "\n".join(lines) + "\n"

    def differences(self, ruleset: RuleSet) -> list[str]:
        problems: list[str] = []
        with _lock:
            self._enter_namespace()
            for ipv6 in (False, True):
                family = "ipv6" if ipv6 else "ipv4"
                installed = self._installed(ipv6)
                for hook, placement in PLACEMENTS.items():
                    have = installed.get(f"{placement.table}/{placement.chain}")
                    if have is None:
                        problems.append(f"{family} {placement.table} chain {placement.chain} is missing "
                                        "(its rules are not in force)")
                        continue
                    # An earlier rule in the built-in chain could accept what ours would refuse.
                    builtin = installed.get(f"{placement.table}/{placement.builtin}", [])
                    jump = self._decode(self._build(jump_rule(placement), ipv6), ipv6)
                    if not builtin or builtin[0] != jump:
                        where = "is missing" if jump not in builtin else "is not the first rule"
                        problems.append(f"{family} {placement.table} {placement.builtin}: the jump to "
                                        f"{placement.chain} {where}")
                    want = [(xt.id, self._decode(self._build(xt, ipv6), ipv6))
                            for xt in chain_rules(ruleset, hook, ipv6)]
                    problems += _compare(f"{family} {placement.table} {placement.chain}", want, have, ruleset)
        return problems


def _comment(decoded: dict[str, Any]) -> str:
    comment = decoded.get("comment", {})
    return comment.get("comment", "") if isinstance(comment, dict) else ""


def _compare(where: str, want: list[tuple[str, dict[str, Any]]], have: list[dict[str, Any]],
             ruleset: RuleSet) -> list[str]:
    if [d for _, d in want] == have:
        return []
    described = {r.id: r.describe() for r in ruleset.rules}
    have_by_comment = {_comment(d): d for d in have}
    problems = []
    for rule_id, decoded in want:
        comment = COMMENT_PREFIX + rule_id
        detail = f": {described[rule_id]}" if rule_id in described else ""
        if comment not in have_by_comment:
            problems.append(f"rule {rule_id} is missing from {where}{detail}")
        elif have_by_comment[comment] != decoded:
            problems.append(f"rule {rule_id} in {where} was changed{detail}")
    wanted = {COMMENT_PREFIX + rule_id for rule_id, _ in want}
    problems += [f"unexpected rule in {where}: {format_rule(d)}" for d in have if _comment(d) not in wanted]
    if not problems:
        problems.append(f"rules in {where} are out of order: expected " + ", ".join(i for i, _ in want))
    return problems


def _option(key: str, value: Any) -> str:
    values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    negated = bool(values) and values[0] == "!"
    text = " ".join([f"--{key}", *values[negated:]])
    return f"! {text}" if negated else text


def format_rule(decoded: dict[str, Any]) -> str:
    """iptables-save-like text of a decoded rule."""
    parts = []
    for key in ("protocol", "dst", "in-interface"):
        if key in decoded:
            parts.append(f"--{key} {decoded[key]}")
    for key, value in decoded.items():
        if key in ("protocol", "dst", "in-interface", "src", "out-interface", "target"):
            continue
        for params in value if isinstance(value, list) else [value]:
            text = " ".join(_option(k, v) for k, v in params.items()) if isinstance(params, dict) else ""
            parts.append(f"-m {key} {text}".rstrip())
    target = decoded.get("target")
    if isinstance(target, dict):
        (name, params), = target.items()
        parts.append(f"-j {name} " + " ".join(f"--{k} {v}" for k, v in params.items()))
    elif target:
        parts.append(f"-j {target}")
    return " ".join(parts)
