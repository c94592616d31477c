"""nftables backend: one `table inet ccr_firewall` (IPv4 and IPv6), replaced atomically.

The table is written as libnftables JSON in a single transaction (add table, delete it, add it with all
chains and rules): the kernel either takes the whole new rule set or keeps the old one, so there is no
moment with half the rules. Each rule's comment is `ccr:<rule id>`; `differences` lists the table back
as JSON and compares every rule's expressions with what the model renders.
"""

from __future__ import annotations

import json
from typing import Any

try:  # Debian's bindings (python3-nftables), linked into the venv by make setup
    import nftables
except ImportError:
    nftables = None

from ..common.errors import ConfigError
from .model import Family, Hook, Protocol, Rule, RuleSet, Verdict

TABLE = "ccr_firewall"
FAMILY = "inet"
COMMENT_PREFIX = "ccr:"

# Base chains: (type, hook, priority). NAT at -100 runs before filter at 0, so filter rules see the
# destination after a redirect.
CHAINS: dict[Hook, tuple[str, str, int]] = {
    Hook.NAT_OUTPUT: ("nat", "output", -100),
    Hook.NAT_PREROUTING: ("nat", "prerouting", -100),
    Hook.FILTER_OUTPUT: ("filter", "output", 0),
    Hook.FILTER_INPUT: ("filter", "input", 0),
}


def chain_name(hook: Hook) -> str:
    return hook.value.replace("-", "_")


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _values(values: tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else {"set": list(values)}


def _address(value: str) -> Any:
    if "/" in value:
        addr, length = value.split("/")
        return {"prefix": {"addr": addr, "len": int(length)}}
    return value


def rule_expressions(rule: Rule, exempt_uids: tuple[int, ...]) -> list[dict[str, Any]]:
    expr: list[dict[str, Any]] = []
    if rule.hook.confined:
        expr.append(_match({"meta": {"key": "skuid"}}, _values(exempt_uids), "!="))
    if rule.from_loopback:
        expr.append(_match({"meta": {"key": "iifname"}}, "lo"))
    ip = "ip" if rule.family is Family.IPV4 else "ip6"
    if rule.family is not Family.BOTH and rule.daddr is None:
        expr.append(_match({"meta": {"key": "nfproto"}}, rule.family.value))
    if rule.daddr is not None:
        expr.append(_match({"payload": {"protocol": ip, "field": "daddr"}}, _address(rule.daddr)))
    if rule.protocol is Protocol.ICMP:
        expr.append(_match({"meta": {"key": "l4proto"}}, {"set": ["icmp", "ipv6-icmp"]}))
    elif rule.protocol is Protocol.TCP and not (rule.dports or rule.sports or rule.dport_range):
        expr.append(_match({"meta": {"key": "l4proto"}}, "tcp"))
    if rule.sports:
        expr.append(_match({"payload": {"protocol": "tcp", "field": "sport"}}, _values(rule.sports)))
    if rule.dports:
        expr.append(_match({"payload": {"protocol": "tcp", "field": "dport"}}, _values(rule.dports)))
    if rule.dport_range:
        expr.append(_match({"payload": {"protocol": "tcp", "field": "dport"}}, {"range": list(rule.dport_range)}))
    if rule.established:
        expr.append(_match({"ct": {"key": "state"}}, ["established", "related"], "in"))
    expr.append({"counter": {"packets": 0, "bytes": 0}})
    if rule.verdict is Verdict.REDIRECT:
        expr.append({"redirect": {"port": rule.to_port}})
    elif rule.verdict is Verdict.RESET:
        expr.append({"reject": {"type": "tcp reset"}})
    else:
        expr.append({rule.verdict.value: None})
    return expr


def ruleset_commands(ruleset: RuleSet) -> list[dict[str, Any]]:
    table = {"family": FAMILY, "name": TABLE}
    commands: list[dict[str, Any]] = [{"add": {"table": table}}, {"delete": {"table": table}},
                                      {"add": {"table": table}}]
    for hook, (kind, hook_name, prio) in CHAINS.items():
        commands.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": chain_name(hook),
                                           "type": kind, "hook": hook_name, "prio": prio, "policy": "accept"}}})
    for rule in ruleset.rules:
        commands.append({"add": {"rule": {
            "family": FAMILY, "table": TABLE, "chain": chain_name(rule.hook),
            "expr": rule_expressions(rule, ruleset.config.exempt_uids),
            "comment": COMMENT_PREFIX + rule.id}}})
    return commands


def _normalize(expr: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counters count: compare only that a counter is there."""
    return [{"counter": True} if "counter" in e else e for e in expr]


class NftablesBackend:
    name = "nftables"

    def __init__(self) -> None:
        if nftables is None:
            raise ConfigError("the nftables backend needs Debian's python3-nftables (run make setup), "
                              "or choose --backend iptables")
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)

    def _run_json(self, commands: list[dict[str, Any]], what: str) -> None:
        rc, _out, err = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise ConfigError(f"nftables refused to {what}: {err.strip() or f'error {rc}'}")

    def _list(self) -> list[dict[str, Any]] | None:
        """The table's objects as JSON, or None when the table does not exist."""
        rc, out, err = self._nft.cmd(f"list table {FAMILY} {TABLE}")
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise ConfigError(f"cannot list nftables table {TABLE}: {err.strip()}")
        return [item for item in json.loads(out)["nftables"] if "metainfo" not in item]

    def apply(self, ruleset: RuleSet) -> None:
        self._run_json(ruleset_commands(ruleset), "apply the firewall rules")

    def clean(self) -> bool:
        if self._list() is None:
            return False
        self._run_json([{"delete": {"table": {"family": FAMILY, "name": TABLE}}}], "delete the firewall table")
        return True

    def show(self) -> str:
        self._nft.set_json_output(False)
        try:
            rc, out, err = self._nft.cmd(f"list table {FAMILY} {TABLE}")
        finally:
            self._nft.set_json_output(True)
        if rc != 0:
            return f"no table {FAMILY} {TABLE}: no firewall rules in force\n"
        return out

    def differences(self, ruleset: RuleSet) -> list[str]:
        listed = self._list()
        if listed is None:
            return [f"table {FAMILY} {TABLE} is missing: no firewall rules in force"]
        problems: list[str] = []
        chains = {c["chain"]["name"]: c["chain"] for c in listed if "chain" in c}
        installed: dict[str, list[dict[str, Any]]] = {}
        for item in listed:
            if "rule" in item:
                installed.setdefault(item["rule"]["chain"], []).append(item["rule"])
        for hook, (kind, hook_name, prio) in CHAINS.items():
            name = chain_name(hook)
            chain = chains.pop(name, None)
            if chain is None:
                problems.append(f"chain {name} is missing (its rules are not in force)")
                continue
            actual = (chain.get("type"), chain.get("hook"), chain.get("prio"), chain.get("policy"))
            if actual != (kind, hook_name, prio, "accept"):
                problems.append(f"chain {name} is {actual}, expected {(kind, hook_name, prio, 'accept')}")
            problems += self._compare_chain(name, ruleset.in_hook(hook), installed.pop(name, []), ruleset)
        problems += [f"unexpected chain {name} in table {TABLE}" for name in chains]
        for name, rules in installed.items():
            problems += [f"unexpected rule in chain {name}: {r.get('comment', r['expr'])}" for r in rules]
        problems += [f"unexpected {next(iter(item))} in table {TABLE}" for item in listed
                     if not {"table", "chain", "rule"} & item.keys()]
        return problems

    @staticmethod
    def _compare_chain(name: str, expected: list[Rule], actual: list[dict[str, Any]],
                       ruleset: RuleSet) -> list[str]:
        problems: list[str] = []
        want = [(COMMENT_PREFIX + r.id, _normalize(rule_expressions(r, ruleset.config.exempt_uids)), r)
                for r in expected]
        have = [(r.get("comment", ""), _normalize(r["expr"])) for r in actual]
        if [(c, e) for c, e, _ in want] == have:
            return problems
        have_by_comment = dict(have)
        for comment, expr, rule in want:
            if comment not in have_by_comment:
                problems.append(f"rule {rule.id} is missing from chain {name}: {rule.describe()}")
            elif have_by_comment[comment] != expr:
                problems.append(f"rule {rule.id} in chain {name} was changed: expected {rule.describe()}")
        wanted = {c for c, _, _ in want}
        for comment, expr in have:
            if comment not in wanted:
                problems.append(f"unexpected rule in chain {name}: {comment or json.dumps(expr)}")
        if not problems:
            problems.append(f"rules in chain {name} are out of order: expected "
                            + ", ".join(r.id for r in expected))
        return problems
