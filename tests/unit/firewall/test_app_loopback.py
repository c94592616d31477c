"""`application.loopback_tcp`: one accept rule for the app's own loopback range, rendered by both backends;
refused when a port of the room falls in that range; and absent from the canonical spec when off, so the
HOST_DATA of rooms that do not ask is unchanged."""

from __future__ import annotations

import pytest
import yaml

from sidecars.firewall import FirewallConfig, render, rules_from_spec
from sidecars.firewall.iptables import xt_rules
from sidecars.firewall.model import APP_LOOPBACK_PORTS, Hook
from sidecars.firewall.nft import rule_expressions
from sidecars.room.registry import layout
from sidecars.spec import parse_spec

LOCAL = {"cgs_endpoint": "https://127.0.0.1:9001", "maa_endpoint": "https://127.0.0.1:9002",
         "storage_url": "https://127.0.0.1:9003/devstoreaccount1", "keyvault_url": "https://127.0.0.1:9004"}


def api_spec(repo, **application):
    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    data["application"].update(application)
    return parse_spec(data, variables=LOCAL)


def test_the_rule_comes_only_with_the_option_and_before_the_reset(repo):
    off = rules_from_spec(api_spec(repo), layout())
    assert "to-app-loopback" not in [r.id for r in off.rules]
    on = rules_from_spec(api_spec(repo, loopback_tcp=True), layout())
    output = [r.id for r in on.in_hook(Hook.FILTER_OUTPUT)]
    assert output.index("to-app-loopback") < output.index("tcp-reset")
    rule = next(r for r in on.rules if r.id == "to-app-loopback")
    assert (rule.daddr, rule.dport_range, rule.dports) == ("127.0.0.1", APP_LOOPBACK_PORTS, ())
    assert {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                      "right": {"range": list(APP_LOOPBACK_PORTS)}}} in rule_expressions(rule, (0,))
    (xt,) = xt_rules(rule, ipv6=False)
    assert ("tcp", (("dport", f"{APP_LOOPBACK_PORTS[0]}:{APP_LOOPBACK_PORTS[1]}"),)) in xt.matches
    assert xt_rules(rule, ipv6=True) == []  # IPv4 loopback only


def test_no_port_of_the_room_may_be_in_the_apps_range():
    low = APP_LOOPBACK_PORTS[0]
    for ports in ({"inbound_port": low}, {"sidecar_ports": (low + 5,)}, {"open_ports": (65535,)}):
        options = {"inbound_port": 15001, "http_egress_port": 15002, "tcp_egress_port": 15003, **ports}
        with pytest.raises(ValueError, match="in the app's loopback range"):
            FirewallConfig(app_uid=1000, app_loopback=True, **options)
        render(FirewallConfig(app_uid=1000, **options))  # without the option the same ports are fine


def test_the_option_off_leaves_the_canonical_spec_unchanged(repo):
    assert "loopback_tcp" not in api_spec(repo).canonical_json()
    assert '"loopback_tcp":true' in api_spec(repo, loopback_tcp=True).canonical_json()
