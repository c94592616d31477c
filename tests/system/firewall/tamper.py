"""Changing the rules behind the firewall's back, the way an intruder with root in the room would: with
the system's own tools (`nft`, `iptables-legacy`), not with our code."""

from __future__ import annotations

import re
import subprocess

from sidecars.firewall.nft import TABLE


def _run(netns: str, *argv: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


def delete_rule(backend: str, netns: str, rule_id: str, chain: str = "filter_output") -> None:
    """Delete one of our rules (IPv4 and IPv6 for the iptables backend)."""
    if backend == "nftables":
        listing = _run(netns, "nft", "-a", "list", "chain", "inet", TABLE, chain)
        handle = re.search(rf'comment "ccr:{re.escape(rule_id)}" # handle (\d+)', listing).group(1)
        _run(netns, "nft", "delete", "rule", "inet", TABLE, chain, "handle", handle)
        return
    xt_chain = {"filter_output": "CCR-OUTPUT", "filter_input": "CCR-INPUT"}[chain]
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        rules = [line for line in _run(netns, tool, "-S", xt_chain).splitlines() if line.startswith("-A ")]
        position = next((i + 1 for i, line in enumerate(rules) if f"ccr:{rule_id}" in line), None)
        if position is not None:
            _run(netns, tool, "-D", xt_chain, str(position))


def open_hole(backend: str, netns: str, uid: int) -> None:
    """Accept everything `uid` sends, ahead of our rules."""
    if backend == "nftables":
        _run(netns, "nft", "insert", "rule", "inet", TABLE, "filter_output", "meta", "skuid", str(uid), "accept")
        return
    for tool in ("iptables-legacy", "ip6tables-legacy"):
        _run(netns, tool, "-I", "OUTPUT", "1", "-m", "owner", "--uid-owner", str(uid), "-j", "ACCEPT")
