"""`verify` against rules changed behind the firewall's back: each change opens a real hole (shown by
an attack getting through), and verify must fail naming it; `apply` closes it again."""

from __future__ import annotations

import pytest

from .conftest import APP_UID, EGRESS, OUTSIDE_V4, make_spec
from .tamper import delete_rule, open_hole

pytestmark = pytest.mark.root


def test_apply_is_idempotent_and_verifies(room, backend):
    firewall = room.firewall(backend, make_spec(EGRESS))
    firewall.apply()
    firewall.apply()
    assert firewall.verify().ok
    shown = firewall.show()
    per_family = 1 if backend == "nftables" else 2
    for rule in firewall.ruleset.rules:
        families = 1 if rule.family.value == "ipv4" or backend == "nftables" else per_family
        assert shown.count(f"ccr:{rule.id}") == families, rule.id
    assert not room.attack("tcp", OUTSIDE_V4, "22")["ok"]


def test_apply_replaces_the_rules_of_another_spec(room, backend):
    room.firewall(backend, make_spec(EGRESS)).apply()
    assert room.attack("tcp", OUTSIDE_V4, "443")["ok"]
    closed = room.firewall(backend, make_spec())
    closed.apply()
    assert closed.verify().ok
    assert room.attack("tcp", OUTSIDE_V4, "443")["error"] == "ECONNREFUSED"


def test_verify_names_a_rule_deleted_behind_its_back(room, backend):
    firewall = room.firewall(backend, make_spec(EGRESS))
    firewall.apply()
    delete_rule(backend, room.name, "drop-rest")
    # The hole is real: the app's UDP now leaves the room.
    assert room.attack("udp", OUTSIDE_V4, "53")["ok"]
    report = firewall.verify()
    assert not report.ok
    assert any(d.startswith("rule drop-rest is missing") for d in report.differences), report.differences
    firewall.apply()
    assert firewall.verify().ok
    assert room.attack("udp", OUTSIDE_V4, "53")["error"] == "EPERM"
    assert len(room.outside_udp.seen) == 1


def test_verify_catches_a_rule_inserted_ahead_of_ours(room, backend):
    firewall = room.firewall(backend, make_spec())
    firewall.apply()
    open_hole(backend, room.name, APP_UID)
    assert room.attack("tcp", OUTSIDE_V4, "22")["banner"].startswith("outside:22")
    report = firewall.verify()
    expected = ("unexpected rule in chain filter_output" if backend == "nftables"
                else "ipv4 filter OUTPUT: the jump to CCR-OUTPUT is not the first rule")
    assert any(d.startswith(expected) for d in report.differences), report.differences


def test_verify_fails_after_clean_and_for_another_spec(room, backend):
    closed = room.firewall(backend, make_spec())
    closed.apply()
    report = room.firewall(backend, make_spec(EGRESS)).verify()
    assert any("egress-http is missing" in d for d in report.differences), report.differences
    assert closed.clean() is True
    assert closed.clean() is False
    assert not closed.verify().ok
    assert "no firewall rules in force" in closed.show()
    assert room.attack("tcp", OUTSIDE_V4, "22")["ok"]


def test_a_refused_nftables_apply_leaves_the_rules_in_force(room):
    """One transaction: if the kernel refuses any part, the old rules stay whole (never half a rule set)."""
    from dataclasses import replace

    from sidecars.common.errors import ConfigError
    from sidecars.firewall import Firewall
    from sidecars.firewall.model import Family, Hook, Protocol, Rule, Verdict

    closed = room.firewall("nftables", make_spec())
    closed.apply()
    opened = room.firewall("nftables", make_spec(EGRESS)).ruleset
    # The last rule is one the kernel refuses (an IPv6 address in an IPv4 match).
    broken = replace(opened, rules=(*opened.rules, Rule("broken", Hook.FILTER_OUTPUT, Verdict.ACCEPT,
                                                        Family.IPV4, Protocol.TCP, daddr="::1")))
    with pytest.raises(ConfigError, match="nftables refused to apply the firewall rules"):
        Firewall(broken, netns=room.name).apply()
    assert closed.verify().ok
    assert room.attack("tcp", OUTSIDE_V4, "80")["error"] == "ECONNREFUSED"
