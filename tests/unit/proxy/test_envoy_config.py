"""Every configuration the proxy renders is checked by the real Envoy binary (`envoy --mode validate`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sidecars.common.errors import ConfigError, SpecError
from sidecars.common.http import TlsFiles
from sidecars.common.roomevidence import NONCE_EVIDENCE_PATH, PUBLIC_EVIDENCE_PATH
from sidecars.common.tls import LocalCA
from sidecars.proxy.envoy import EVIDENCE_CLUSTER, render_bootstrap, validate_bootstrap, write_bootstrap
from sidecars.proxy.model import model_from_spec
from sidecars.proxy.runtime import plan
from sidecars.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[3]
VARIABLES = {"cgs_endpoint": "https://127.0.0.1:9000", "maa_endpoint": "https://127.0.0.1:9001",
             "storage_url": "https://127.0.0.1:9002/devstoreaccount1", "keyvault_url": "https://127.0.0.1:9003"}


@pytest.fixture(scope="module")
def room_tls(tmp_path_factory) -> tuple[LocalCA, TlsFiles]:
    ca = LocalCA.create(tmp_path_factory.mktemp("ca"))
    return ca, ca.issue_server_cert("room")


def _spec_dir(tmp_path: Path, egress: list[dict], endpoints: list[tuple[str, int, str | None]]):
    for policy in {p for _, _, p in endpoints if p}:
        shutil.copy(REPO / "policies" / policy, tmp_path / policy)
    data = {
        "apiVersion": "ccr/v1", "name": "room",
        "contract": {"id": "c1", "governance": {"endpoint": "https://127.0.0.1:9000"}},
        "maa_endpoint": "https://127.0.0.1:9001",
        "application": {"name": "app", "image": "localhost/app@sha256:" + "0" * 64, "mode": "api",
                        "resources": {"cpu": 1, "memory_gb": 1}},
        "endpoints": [{"name": n, "port": p, **({"policy": pol} if pol else {})} for n, p, pol in endpoints],
        "egress": {"allow": egress},
    }
    return parse_spec(data, base_dir=tmp_path)


def _validate(model, tmp_path: Path) -> dict:
    path = write_bootstrap(model, tmp_path / "envoy.json")
    validate_bootstrap(path)
    return render_bootstrap(model)


def test_example_spec_renders_a_valid_config(tmp_path, room_tls):
    ca, tls = room_tls
    spec = load_spec(REPO / "examples/cleanroomhello-api/spec.yaml", variables=VARIABLES)
    model = plan(model_from_spec(spec, inbound_tls=tls))
    config = _validate(model, tmp_path)
    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    assert listeners["inbound"]["address"]["socket_address"]["port_value"] == 15001
    assert listeners["egress_http"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15002}
    assert listeners["egress_tcp"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15003}
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


@pytest.mark.parametrize("use_rbac", [True, False])
def test_every_enforcement_and_egress_kind_renders_valid(tmp_path, room_tls, use_rbac):
    ca, tls = room_tls
    spec = _spec_dir(tmp_path, [
        {"host": "api.example.com", "port": 443, "protocol": "https"},
        {"host": "api.example.com", "port": 8443, "protocol": "https"},
        {"host": "plain.example.com", "port": 80, "protocol": "http"},
        {"host": "10.1.2.3", "port": 5432, "protocol": "tcp"},
        {"host": "10.1.2.4", "port": 6379, "protocol": "tcp"},
    ], [("hello", 8080, "allow-get-hello.rego"), ("orders", 8081, "allow-post-json-schema.rego"),
        ("records", 8082, "deny-forbidden-response.rego"), ("closed", 8083, None)])
    model = plan(model_from_spec(spec, inbound_tls=tls, upstream_ca_file=str(ca.cert_file)),
                 use_rbac=use_rbac)
    enforcement = {e.name: (e.enforcement, e.needs_body, e.inspect_response) for e in model.inbound}
    assert enforcement == {
        "hello": ("rbac" if use_rbac else "ext_authz", False, False),
        "orders": ("ext_authz", True, False),
        "records": ("ext_authz", False, True),
        "closed": ("deny", False, False),
    }
    _validate(model, tmp_path)


def test_dns_over_tcp_goes_to_the_resolvers(tmp_path, room_tls):
    from sidecars.proxy.model import system_resolvers

    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 10.0.0.2\nnameserver fd00::1\nnameserver 10.0.0.3\noptions use-vc\n")
    assert system_resolvers(conf) == ("10.0.0.2", "10.0.0.3")
    spec = parse_spec({**_spec_dir(tmp_path, [{"host": "10.1.2.3", "port": 5432, "protocol": "tcp"}],
                                   [("hello", 8080, "allow-get-hello.rego")]).model_dump(by_alias=True, mode="json"),
                       "egress": {"allow": [{"host": "10.1.2.3", "port": 5432, "protocol": "tcp"}], "dns": "tcp"}},
                      base_dir=tmp_path)
    model = plan(model_from_spec(spec, inbound_tls=room_tls[1], dns_resolvers=("10.0.0.2", "10.0.0.3")))
    assert model.dns_resolvers == ("10.0.0.2", "10.0.0.3")
    _validate(model, tmp_path)
    with pytest.raises(ConfigError, match="egress.dns: tcp needs a resolver"):
        model_from_spec(spec, inbound_tls=room_tls[1], dns_resolvers=())


@pytest.mark.parametrize("host", ["db.example.com", "fd00::5"])
def test_tcp_egress_needs_an_ipv4_address(tmp_path, host):
    # The spec's rule (the firewall redirects only IPv4): the proxy never gets such a spec.
    with pytest.raises(SpecError, match=r"egress.allow\[0\].host: a tcp rule needs an IPv4 address"):
        _spec_dir(tmp_path, [{"host": host, "port": 5432, "protocol": "tcp"}],
                  [("hello", 8080, "allow-get-hello.rego")])


def test_validation_is_the_real_binary_refusing(tmp_path, room_tls):
    spec = load_spec(REPO / "examples/cleanroomhello-api/spec.yaml", variables=VARIABLES)
    missing = TlsFiles(str(tmp_path / "nope.pem"), str(tmp_path / "nope.key"))
    model = plan(model_from_spec(spec, inbound_tls=missing))
    with pytest.raises(ConfigError, match=r"Envoy rejects .*nope\.(pem|key)"):
        validate_bootstrap(write_bootstrap(model, tmp_path / "envoy.json"))


def test_ccr_proxy_render_writes_a_validated_config(tmp_path, capsys):
    from sidecars.cli import main

    out = tmp_path / "envoy.json"
    argv = ["proxy", "render", "--spec", str(REPO / "examples/cleanroomhello-api/spec.yaml"),
            "--run-dir", str(tmp_path / "run"), "-o", str(out)]
    for name, value in VARIABLES.items():
        argv += ["--var", f"{name}={value}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "endpoint hello (app port 8080): rbac" in printed and out.exists()
    assert main([*argv, "--no-rbac"]) == 0
    assert "endpoint hello (app port 8080): ext_authz" in capsys.readouterr().out
    assert main(["proxy", "render", "--spec", str(tmp_path / "missing.yaml"), "--run-dir", str(tmp_path),
                 "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith("ccr: error:")


@pytest.mark.parametrize("use_rbac", [True, False])
def test_every_endpoint_serves_the_rooms_evidence_and_nothing_else_of_skr(tmp_path, room_tls, use_rbac):
    ca, tls = room_tls
    spec = _spec_dir(tmp_path, [], [("hello", 8080, "allow-get-hello.rego"), ("orders", 8081,
                                     "allow-post-json-schema.rego"), ("records", 8082, "deny-forbidden-response.rego"),
                                    ("closed", 8083, None)])
    model = plan(model_from_spec(spec, inbound_tls=tls, evidence_port=8284), use_rbac=use_rbac)
    config = _validate(model, tmp_path)  # the per-route filter overrides are ones Envoy knows
    skr = [c for c in config["static_resources"]["clusters"] if c["name"] == EVIDENCE_CLUSTER]
    assert len(skr) == 1
    for chain in config["static_resources"]["listeners"][0]["filter_chains"]:
        routes = chain["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        to_skr = [r for r in routes if r.get("route", {}).get("cluster") == EVIDENCE_CLUSTER]
        # one route, an exact path and method, rewritten to skr's nonce route: no other skr path is reachable
        assert to_skr == [routes[0]] and routes[0]["match"]["path"] == PUBLIC_EVIDENCE_PATH
        assert routes[0]["route"]["prefix_rewrite"] == NONCE_EVIDENCE_PATH
        assert routes[0]["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "POST"}}]
    without = render_bootstrap(plan(model_from_spec(spec, inbound_tls=tls), use_rbac=use_rbac))
    assert EVIDENCE_CLUSTER not in {c["name"] for c in without["static_resources"]["clusters"]}
