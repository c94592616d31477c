"""The rule model rendered from specs: which rules exist for which contract (pure, no root)."""

from __future__ import annotations

import pytest
import yaml

from sidecars.common.errors import SpecError
from sidecars.firewall import Firewall, FirewallConfig, render, rules_from_spec
from sidecars.firewall.model import Hook, Verdict
from sidecars.room.registry import layout
from sidecars.spec import parse_spec

LOCAL = {"cgs_endpoint": "https://127.0.0.1:9001", "maa_endpoint": "https://127.0.0.1:9002",
         "storage_url": "https://127.0.0.1:9003/devstoreaccount1", "keyvault_url": "https://127.0.0.1:9004"}


def api_spec(repo, **changes):
    data = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
    data.update(changes)
    return parse_spec(data, variables=LOCAL)


def redirects(ruleset) -> dict[str, int]:
    return {r.id: r.to_port for r in ruleset.rules if r.verdict is Verdict.REDIRECT}


def test_no_egress_is_no_network_mode(repo):
    ruleset = rules_from_spec(api_spec(repo), layout())
    assert ruleset.config.no_network
    # Only the inbound redirect: no connection of the app is ever sent anywhere.
    assert redirects(ruleset) == {"inbound-app": 15001}
    assert [r.id for r in ruleset.in_hook(Hook.FILTER_OUTPUT)] == ["inbound-replies", "tcp-reset", "drop-rest"]


def test_egress_rules_route_to_the_proxy_listeners(repo):
    spec = api_spec(repo, egress={"dns": "tcp", "allow": [
        {"host": "api.example.com", "port": 443},
        {"host": "plain.example.com", "port": 8080, "protocol": "http"},
        {"host": "10.0.0.7", "port": 5432, "protocol": "tcp"},
    ]})
    ruleset = rules_from_spec(spec, layout())
    assert redirects(ruleset) == {"egress-tcp-10.0.0.7-5432": 15003, "egress-dns-tcp": 15003,
                                  "egress-http": 15002, "inbound-app": 15001}
    http = next(r for r in ruleset.rules if r.id == "egress-http")
    assert http.dports == (443, 8080)
    to_proxy = next(r for r in ruleset.rules if r.id == "to-proxy")
    assert (to_proxy.daddr, to_proxy.dports) == ("127.0.0.1", (15002, 15003))


def test_dns_alone_does_not_open_the_network(repo):
    ruleset = rules_from_spec(api_spec(repo, egress={"dns": "tcp", "allow": []}), layout())
    assert ruleset.config.no_network and "egress-dns-tcp" not in redirects(ruleset)


@pytest.mark.parametrize(("host", "problem"), [
    ("db.example.com", "a tcp rule needs an IPv4 address, not 'db.example.com' (the TCP proxy matches the "
                       "destination address; reach a host name with an http or https rule)"),
    ("2001:db8::1", "a tcp rule needs an IPv4 address, not '2001:db8::1': the app has no IPv6 egress"),
])
def test_tcp_egress_needs_an_ipv4_address(repo, host, problem):
    # The spec's rule: such a spec does not load, so the firewall never renders rules from it.
    with pytest.raises(SpecError) as info:
        api_spec(repo, egress={"allow": [{"host": host, "port": 5432, "protocol": "tcp"}]})
    assert info.value.problems == [f"egress.allow[0].host: {problem}"]


def test_the_app_uid_cannot_be_exempt(repo):
    with pytest.raises(SpecError, match="application.user: the app's uid 1000 cannot be exempt"):
        rules_from_spec(api_spec(repo), layout(), exempt_uids=(0, 1000))


def test_open_ports_join_the_inbound_proxy():
    ruleset = render(FirewallConfig(app_uid=1000, inbound_port=15001, http_egress_port=15002, tcp_egress_port=15003,
                                     open_ports=(8200,)))
    assert next(r for r in ruleset.rules if r.id == "in-proxy").dports == (8200, 15001)


def test_unknown_backend_is_refused(repo):
    from sidecars.common.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown firewall backend 'pf'"):
        Firewall.from_spec(api_spec(repo), layout(), backend="pf")


@pytest.mark.parametrize("script, refused", [
    # the rules differ: the differences, named
    ("import json; print(json.dumps({'ok': False, 'differences': ['rule in-drop is missing']})); exit(1)",
     "FirewallNotInForce: the firewall rules in force differ from the spec: rule in-drop is missing"),
    # no room to check against: the check's own one line
    ("import sys; print('ccr firewall verify: CCR_SPEC is not set', file=sys.stderr); exit(2)",
     "ProcessError: the firewall check failed: ccr firewall verify: CCR_SPEC is not set"),
    # a check that exits 0 without saying the rules are in force is no pass
    ("print('fine')", "ProcessError: the firewall check failed: exit code 0"),
    ("import json; print(json.dumps({'ok': True}), flush=True); exit(1)", "ProcessError: the firewall check failed"),
])
def test_the_launchers_check_passes_only_on_an_explicit_ok(script, refused):
    import sys

    from sidecars.common.errors import CcrError
    from sidecars.common.firewall_client import verify_firewall

    with pytest.raises(CcrError) as failed:
        verify_firewall({}, (sys.executable, "-c", script))
    assert f"{type(failed.value).__name__}: {failed.value}".startswith(refused)
    report = verify_firewall({}, (sys.executable, "-c", "print('{\"ok\": true, \"backend\": \"nftables\"}')"))
    assert report.ok and report.backend == "nftables"


def test_a_check_that_cannot_run_is_one_line():
    from sidecars.common.errors import ProcessError
    from sidecars.common.firewall_client import verify_firewall

    with pytest.raises(ProcessError, match="^the firewall check .* did not run: .*No such file"):
        verify_firewall({}, ("/nonexistent/python", "-m", "sidecars.firewall", "verify"))


def test_show_plan_prints_the_rules_of_the_spec_without_touching_the_system(repo):
    import subprocess
    import sys

    variables = [arg for name, value in LOCAL.items() for arg in ("--var", f"{name}={value}")]
    done = subprocess.run([sys.executable, "-m", "sidecars", "firewall", "show", "--plan",
                           str(repo / "examples/cleanroomhello-api/spec.yaml"), *variables],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "inbound-app: [nat-prerouting] ipv4 tcp dport 8080 → redirect to :15001" in done.stdout
