"""Which policies are compiled into Envoy's RBAC filter and which stay in OPA. Whether a compiled policy
decides exactly as OPA does is proven by running both (tests/integration/proxy/test_rbac_equivalence)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecars.proxy.rbac import compile_rbac, defines_response_rule, needs_request_body

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def test_get_hello_compiles_to_method_and_url_path():
    rbac = compile_rbac((POLICIES / "allow-get-hello.rego").read_text())
    assert rbac == {"rules": {"action": "ALLOW", "policies": {"allow-0": {
        "permissions": [{"and_rules": {"rules": [
            {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
            {"url_path": {"path": {"exact": "/hello"}}}]}}],
        "principals": [{"any": True}]}}}}


def test_allow_all_and_deny_all():
    everything = compile_rbac("package envoy.authz\n\nallow := true\n")
    assert everything["rules"]["policies"]["allow-all"]["permissions"] == [{"any": True}]
    nothing = compile_rbac("package envoy.authz\nimport rego.v1\ndefault allow := false\n")
    assert nothing == {"rules": {"action": "ALLOW", "policies": {}}}


def test_alias_sets_prefixes_and_several_rules():
    rbac = compile_rbac("""package envoy.authz
import input.attributes.request.http as http
default allow := false
allow if { http.method in {"GET", "HEAD"}; startswith(http.path, "/api/") }
allow if http.path == "/health"
allow if http.host == "api.room"
""")
    policies = rbac["rules"]["policies"]
    assert policies["allow-0"]["permissions"][0]["and_rules"]["rules"] == [
        {"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                                {"header": {"name": ":method", "string_match": {"exact": "HEAD"}}}]}},
        {"header": {"name": ":path", "string_match": {"prefix": "/api/"}}}]
    assert policies["allow-1"]["permissions"] == [{"header": {"name": ":path", "string_match": {"exact": "/health"}}}]
    assert policies["allow-2"]["permissions"] == [
        {"header": {"name": ":authority", "string_match": {"exact": "api.room"}}}]


@pytest.mark.parametrize("source", [
    # reads a header (a repeated one is joined for OPA, matched per value by RBAC), the body, the query
    'package envoy.authz\nallow if input.attributes.request.http.headers["x-key"] == "k"\n',
    'package envoy.authz\nallow if input.parsed_body.ok == true\n',
    'package envoy.authz\nallow if input.parsed_query.a == ["1"]\n',
    # a path segment that is not made of unreserved characters: decoding would differ
    'package envoy.authz\nallow if input.parsed_path == ["a b"]\n',
    'package envoy.authz\nallow if input.parsed_path == ["a%2Fb"]\n',
    'package envoy.authz\nallow if input.parsed_path == [".."]\n',
    # helper rules, other packages, negation, decision objects
    'package envoy.authz\nok if true\nallow if ok\n',
    'package other\nallow := true\n',
    'package envoy.authz\nallow if not input.attributes.request.http.method == "DELETE"\n',
    'package envoy.authz\nallow := {"allowed": true}\n',
    'package envoy.authz\nallow if { input.attributes.request.http.method == "GET#" }\n',
    'package envoy.authz\nimport data.x\nallow if x\n',
])
def test_anything_outside_the_subset_stays_in_opa(source):
    assert compile_rbac(source) is None


def test_body_and_response_detection():
    assert needs_request_body((POLICIES / "allow-post-json-schema.rego").read_text())
    assert not needs_request_body((POLICIES / "allow-get-hello.rego").read_text())
    assert not needs_request_body((POLICIES / "deny-forbidden-response.rego").read_text())
    for source in ("allow if input.attributes.request.http.body == \"\"", "allow if f(input)",
                   "allow if { h := input.attributes.request.http; h.body == 1 }",
                   "import input.attributes.request.http as h\nallow if h.body == 1"):
        assert needs_request_body(f"package envoy.authz\n{source}\n"), source
    assert defines_response_rule((POLICIES / "deny-forbidden-response.rego").read_text())
    assert not defines_response_rule((POLICIES / "allow-get-hello.rego").read_text())
