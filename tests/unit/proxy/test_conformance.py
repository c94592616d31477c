"""One conformance suite for every Rego engine: the same OPA-Envoy policies, the same requests and
responses, the same decisions — the embedded real OPA, regopy (fallback) and an OPA server's REST API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecars.common.errors import ConfigError
from sidecars.proxy.policies import PolicyConfig, PolicySet

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"

DECISION_OBJECTS = """package envoy.authz

default allow := false

allow := {"allowed": true, "headers": {"x-ccr-user": input.attributes.request.http.headers["x-user"]}} if {
	input.parsed_path == ["user"]
	input.attributes.request.http.headers["x-user"] != ""
}

allow := {"allowed": false, "http_status": 401, "body": "who are you?", "headers": {"www-authenticate": "Bearer"}} if {
	input.parsed_path == ["login"]
}

allow := {"allowed": true, "headers": {"content-length": "0"}} if input.parsed_path == ["smuggle"]

allow := {"allowed": "yes"} if input.parsed_path == ["stringly"]

allow := {"allowed": false, "http_status": 99} if input.parsed_path == ["badstatus"]

allow if {
	input.parsed_query.debug == ["1"]
	input.parsed_path == ["query"]
}
"""


@pytest.fixture(params=["opa", "regopy", "opa-server"])
def engine(request, tmp_path):
    """Builds a PolicySet for one policy on the engine under test."""
    def make(source: str) -> PolicySet:
        path = tmp_path / "policy.rego"
        path.write_text(source)
        opa_url = None
        if request.param == "opa-server":
            opa_url, _calls = request.getfixturevalue("fake_opa_server")
        return PolicySet(PolicyConfig({"api": str(path)}, request.param, opa_url))

    make.kind = request.param
    return make


def check(policies: PolicySet, method: str, path: str, *, headers: dict | None = None, body: bytes = b""):
    return policies.check_request("api", method=method, path=path, headers=headers or {}, body=body)


def test_allow_only_get_hello(engine):
    policies = engine((POLICIES / "allow-get-hello.rego").read_text())
    for path in ("/hello", "/hello?x=1", "/hell%6F"):
        assert check(policies, "GET", path).allowed, path
    # Go's url.Parse (OPA-Envoy) reads `//hello` as an authority, so its parsed_path is [""]; behind
    # Envoy the slashes are merged before the policy sees the path.
    for method, path in (("GET", "//hello"), ("POST", "/hello"), ("GET", "/hello/"), ("GET", "/"),
                         ("GET", "/hello/x"), ("HEAD", "/hello")):
        decision = check(policies, method, path)
        assert not decision.allowed and decision.http_status == 403, (method, path)
    malformed = check(policies, "GET", "/hello%zz")
    assert not malformed.allowed and malformed.http_status == 403 and "percent escape" in malformed.body


def _order(body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {"headers": {"content-type": content_type, "content-length": str(len(data))}, "body": data}


def test_post_with_a_json_body_matching_the_schema(engine):
    policies = engine((POLICIES / "allow-post-json-schema.rego").read_text())
    assert check(policies, "POST", "/orders", **_order({"item": "apple", "quantity": 3})).allowed
    assert check(policies, "POST", "/orders", **_order({"item": "apple", "quantity": 100, "note": "x"})).allowed
    refused = [
        {"item": "apple", "quantity": 3, "price": 1},  # a field outside the schema
        {"item": "", "quantity": 3},
        {"item": "apple", "quantity": 0},
        {"item": "apple", "quantity": 2.5},
        {"item": "apple", "quantity": "3"},
        {"item": "apple", "quantity": 3, "note": 7},
        ["apple", 3],
    ]
    for body in refused:
        assert not check(policies, "POST", "/orders", **_order(body)).allowed, body
    assert not check(policies, "POST", "/orders", **_order({"item": "a", "quantity": 1}, "text/plain")).allowed
    assert not check(policies, "PUT", "/orders", **_order({"item": "a", "quantity": 1})).allowed
    broken = check(policies, "POST", "/orders", **_order(b'{"item": "a", '))
    assert not broken.allowed and broken.http_status == 403 and "not valid JSON" in broken.body


def test_decision_objects_as_opa_envoy_defines_them(engine):
    policies = engine(DECISION_OBJECTS)
    user = check(policies, "GET", "/user", headers={"x-user": "alice"})
    assert user.allowed and user.headers == {"x-ccr-user": "alice"}
    login = check(policies, "GET", "/login")
    assert (login.allowed, login.http_status, login.body, login.headers) == (
        False, 401, "who are you?", {"www-authenticate": "Bearer"})
    # A decision that would rewrite the request's framing, a non-boolean `allowed`, a status out of
    # range, an undefined decision: each one is a denial, never an allow.
    for path in ("/smuggle", "/stringly", "/badstatus", "/elsewhere"):
        decision = check(policies, "GET", path)
        assert not decision.allowed and decision.http_status == 403, path
    assert check(policies, "GET", "/query?debug=1").allowed
    assert not check(policies, "GET", "/query?debug=2").allowed


def test_response_with_a_forbidden_field_is_denied_and_email_redacted(engine):
    policies = engine((POLICIES / "deny-forbidden-response.rego").read_text())
    request = {"attributes": {"request": {"http": {"method": "GET", "path": "/x", "headers": {}}}},
               "parsed_path": ["x"]}

    def respond(body: dict, content_type: str = "application/json"):
        return policies.check_response("api", request, status=200, headers={"content-type": content_type},
                                       body=json.dumps(body).encode())

    leaked = respond({"name": "a", "ssn": "123-45-6789"})
    assert not leaked.allowed and leaked.http_status == 502 and "ssn" in leaked.body
    redacted = respond({"name": "a", "email": "a@example.com"})
    assert redacted.allowed and json.loads(redacted.replace_body) == {"name": "a"}
    plain = respond({"name": "a"})
    assert plain.allowed and plain.replace_body is None
    broken = policies.check_response("api", request, status=200, headers={"content-type": "application/json"},
                                      body=b"{not json")
    assert not broken.allowed and broken.http_status == 502


def test_a_policy_that_does_not_compile_is_refused_at_load(engine):
    with pytest.raises(ConfigError, match="does not compile|refused policy"):
        engine("package envoy.authz\nallow if {")


def test_opa_server_engine_speaks_the_rest_api(fake_opa_server, tmp_path):
    url, calls = fake_opa_server
    path = tmp_path / "hello.rego"
    path.write_text((POLICIES / "allow-get-hello.rego").read_text())
    policies = PolicySet(PolicyConfig({"api": str(path)}, "opa-server", url))
    assert check(policies, "GET", "/hello").allowed
    assert calls == [("PUT", "/v1/policies/hello"), ("POST", "/v1/data/envoy/authz/allow")]


def test_opa_server_unreachable_denies_with_503(tmp_path):
    import socket

    path = tmp_path / "p.rego"
    path.write_text("package envoy.authz\nallow := true\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match="refused policy"):
        PolicySet(PolicyConfig({"api": str(path)}, "opa-server", f"http://127.0.0.1:{port}"))


def test_opa_server_dying_after_load_fails_closed(fake_opa_server, tmp_path):
    url, _calls = fake_opa_server
    path = tmp_path / "p.rego"
    path.write_text("package envoy.authz\nallow := true\n")
    policies = PolicySet(PolicyConfig({"api": str(path)}, "opa-server", url))
    assert check(policies, "GET", "/").allowed
    engine = policies.engines["api"]
    engine._client = type(engine._client)(host="127.0.0.1", port=1, retries=0, timeout=0.5)
    decision = check(policies, "GET", "/")
    assert not decision.allowed and decision.http_status == 503


def test_one_opa_server_cannot_hold_two_endpoints_policies(tmp_path):
    path = tmp_path / "p.rego"
    path.write_text("package envoy.authz\nallow := true\n")
    with pytest.raises(ConfigError, match="one endpoint only"):
        PolicySet(PolicyConfig({"a": str(path), "b": str(path)}, "opa-server", "http://127.0.0.1:1"))
