import pytest

from sidecars.common.rego import RegoEngine, RegoPolicyError

POLICY = """package envoy.authz

default allow := false

allow if {
	input.attributes.request.http.method == "GET"
	input.parsed_path == ["hello"]
}
"""


def test_real_opa_evaluates_and_undefined_is_none():
    engine = RegoEngine().add_policy("authz.rego", POLICY)
    get = {"attributes": {"request": {"http": {"method": "GET"}}}, "parsed_path": ["hello"]}
    post = {"attributes": {"request": {"http": {"method": "POST"}}}, "parsed_path": ["hello"]}
    assert engine.evaluate("envoy.authz.allow", get) is True
    assert engine.evaluate("envoy.authz.allow", post) is False
    assert engine.evaluate("envoy.authz.missing", get) is None


def test_policy_that_does_not_compile_names_the_file():
    with pytest.raises(RegoPolicyError, match="policy bad.rego does not compile: .*rego_parse_error"):
        RegoEngine().add_policy("bad.rego", "package p\nallow if { input.x = }")
