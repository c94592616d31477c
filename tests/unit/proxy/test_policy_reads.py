"""The ext_authz fast path: a policy is judged on only the input parts it reads, and decisions are reused
for requests that agree on all of them. Both are attacked here: every request of a hostile corpus is
judged through the pruned, cached path and by OPA on the full OPA-Envoy input, in an order that primes
the cache with allows first, and the decisions must be identical."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from sidecars.common.rego import RegoEngine
from sidecars.proxy.decision import interpret
from sidecars.proxy.envoy import render_bootstrap
from sidecars.proxy.model import InboundEndpoint, ProxyModel
from sidecars.proxy.opa_input import InputError, build_input
from sidecars.proxy.policies import PolicyConfig, PolicySet
from sidecars.proxy.reads import InputPruner, input_reads, is_deterministic, request_key_headers
from sidecars.proxy.runtime import plan_endpoint

POLICIES_DIR = Path(__file__).resolve().parents[3] / "policies"
HTTP = ("attributes", "request", "http")

POLICIES = {
    "body-schema": (POLICIES_DIR / "allow-post-json-schema.rego").read_text(),
    # Any header whose name starts with x-admin denies: the whole header map is read (dynamic key).
    "no-admin-headers": """package envoy.authz
default allow := false
allow if {
	input.attributes.request.http.method in {"GET", "POST"}
	not admin_header
}
admin_header if {
	some name, _ in input.attributes.request.http.headers
	startswith(name, "x-admin")
}
""",
    # An import alias, bracket keys, the query.
    "alias-and-brackets": """package envoy.authz
import input.attributes.request.http as req
default allow := false
allow if {
	req.headers["x-api-key"] == "k1"
	not input.parsed_query.debug
}
allow if req.headers.authorization == "Bearer ok"
""",
    # The default alias (last step of the import) and an index into parsed_path.
    "default-alias-index": """package envoy.authz
import input.attributes.request.http
allow if {
	http.method == "GET"
	input.parsed_path[0] == "public"
}
""",
    "header-count": """package envoy.authz
allow if count(input.attributes.request.http.headers) <= 4
""",
    # x-request-id reaches the policy as http.id: a policy that reads it must not share decisions.
    "request-id": """package envoy.authz
allow if input.attributes.request.http.id == "abc"
""",
    "raw-body-and-size": """package envoy.authz
allow if {
	input.attributes.request.http.size < 40
	not contains(input.attributes.request.http.body, "forbidden")
}
""",
    # Reads the whole input: nothing pruned, nothing cached, still correct.
    "whole-input": """package envoy.authz
allow if count(input) == 6
""",
    # A decision object with headers and a status, keyed on a header's value.
    "decision-object": """package envoy.authz
allow := {"allowed": true, "headers": {"x-user": input.attributes.request.http.headers["x-user"]}} if {
	input.attributes.request.http.headers["x-user"] != "mallory"
} else := {"allowed": false, "http_status": 401, "body": "who are you"}
""",
}

ORDER = b'{"item": "widget", "quantity": 3}'
BODIES = [
    (b"", None),
    (ORDER, "application/json"),
    (b'{"item": "widget", "quantity": 300}', "application/json"),
    (b'{"item": "widget", "quantity": 3, "admin": true}', "application/json"),
    (ORDER, "text/plain"),
    (b"forbidden", "text/plain"),
    (b'{"item": "widget"', "application/json"),
    (b'{"item": "widget", "quantity": 3.0}', "application/json"),
]
HEADER_SETS = [
    {},
    {"x-api-key": "k1"},
    {"x-api-key": "k2"},
    {"x-api-key": "k1,k1"},
    {"x-admin-override": "1"},
    {"authorization": "Bearer ok"},
    {"x-user": "alice"},
    {"x-user": "mallory"},
    {"a": "1", "b": "2", "c": "3"},
]
REQUEST_IDS = ["abc", "xyz"]
TARGETS = [("GET", "/public/x"), ("GET", "/orders"), ("POST", "/orders"), ("GET", "/public/x?debug=1"),
           ("DELETE", "/public/x"), ("GET", "/public%2Fx")]


def _corpus() -> list[tuple[str, str, dict[str, str], bytes]]:
    requests = []
    for (method, path), headers, (body, content_type), request_id in itertools.product(
            TARGETS, HEADER_SETS, BODIES, REQUEST_IDS):
        all_headers = {"host": "room", "x-request-id": request_id, **headers}
        if content_type:
            all_headers["content-type"] = content_type
        requests.append((method, path, all_headers, body))
    return requests


def _reference(engine: RegoEngine, method: str, path: str, headers: dict[str, str], body: bytes):
    """What OPA decides on the full OPA-Envoy input (None: the input cannot be built, a denial)."""
    try:
        full = build_input(method=method, path=path, headers=headers, body=body)
    except InputError:
        return None
    return interpret(engine.evaluate("envoy.authz.allow", full), document="envoy.authz.allow")


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_pruned_cached_decisions_equal_full_input_decisions(name, tmp_path):
    source = POLICIES[name]
    policy_file = tmp_path / f"{name}.rego"
    policy_file.write_text(source)
    policies = PolicySet(PolicyConfig({"api": str(policy_file)}))
    reference = RegoEngine().add_policy(policy_file.name, source)
    corpus = _corpus()
    expected = [_reference(reference, *request) for request in corpus]
    allowed = [i for i, decision in enumerate(expected) if decision is not None and decision.allowed]
    assert allowed and len(allowed) < len(corpus), "the corpus must hold both allowed and denied requests"
    # Allowed requests first (to prime the cache with allows), then everything twice in a random order.
    order = allowed + random.Random(name).sample(range(len(corpus)), len(corpus)) * 2
    for i in order:
        method, path, headers, body = corpus[i]
        got = policies.check_request("api", method=method, path=path, headers=headers, body=body)
        want = expected[i]
        if want is None:
            assert not got.allowed, f"{name}: {corpus[i]} allowed, but its input cannot be built"
            continue
        assert (got.allowed, got.http_status, got.headers, got.body) == \
            (want.allowed, want.http_status, want.headers, want.body), f"{name}: {corpus[i]}"
    cache = policies.cache_of("api")
    if name == "whole-input":
        assert cache is None
    else:
        assert cache is not None and cache.hits > len(corpus), "the cached path was not exercised"


def _policy_set(tmp_path: Path, source: str, **config) -> PolicySet:
    policy_file = tmp_path / "p.rego"
    policy_file.write_text(source)
    return PolicySet(PolicyConfig({"api": str(policy_file)}, **config))


def test_a_cached_allow_is_not_given_to_a_request_differing_in_a_read_header(tmp_path):
    policies = _policy_set(tmp_path, POLICIES["no-admin-headers"])
    base = {"host": "room", "x-request-id": "1"}
    assert policies.check_request("api", method="GET", path="/a", headers=base, body=b"").allowed
    assert policies.check_request("api", method="GET", path="/a", headers={**base, "x-request-id": "2"},
                                  body=b"").allowed
    # The policy reads every header (any name may start with x-admin), x-request-id too: no reuse.
    assert policies.cache_of("api").hits == 0  # type: ignore[union-attr]
    attack = {**base, "x-admin-override": "yes"}
    assert not policies.check_request("api", method="GET", path="/a", headers=attack, body=b"").allowed


def test_a_cached_allow_is_not_given_to_a_request_with_another_body(tmp_path):
    policies = _policy_set(tmp_path, POLICIES["body-schema"])
    headers = {"host": "room", "content-type": "application/json"}
    assert policies.check_request("api", method="POST", path="/orders", headers=headers, body=ORDER).allowed
    assert policies.check_request("api", method="POST", path="/orders", body=ORDER,
                                  headers={**headers, "x-request-id": "2", "user-agent": "x"}).allowed
    assert policies.cache_of("api").hits == 1  # type: ignore[union-attr]  # unread headers: reused
    for body in (b'{"item": "widget", "quantity": 3, "x": 1}', b'{"item": "widget", "quantity": 101}',
                 b'{"item": "", "quantity": 3}', b'{"quantity": 3, "item": "widget", "item": 7}'):
        assert not policies.check_request("api", method="POST", path="/orders", headers=headers, body=body).allowed
    assert not policies.check_request("api", method="POST", path="/orders",
                                      headers={**headers, "content-type": "text/plain"}, body=ORDER).allowed
    assert not policies.check_request("api", method="PUT", path="/orders", headers=headers, body=ORDER).allowed


def test_a_policy_calling_a_nondeterministic_builtin_is_evaluated_every_time(tmp_path):
    policies = _policy_set(tmp_path, "package envoy.authz\nallow if rand.intn(\"coin\", 2) == 0\n")
    seen = {policies.check_request("api", method="GET", path="/", headers={}, body=b"").allowed for _ in range(60)}
    assert seen == {True, False}
    assert policies.cache_of("api") is None


def test_the_cache_holds_a_bounded_number_of_small_keys(tmp_path):
    policies = _policy_set(tmp_path, POLICIES["body-schema"])
    cache = policies.cache_of("api")
    assert cache is not None
    headers = {"content-type": "application/json"}
    for i in range(cache.entries + 200):
        body = json.dumps({"item": f"w{i}", "quantity": 1}).encode()
        assert policies.check_request("api", method="POST", path="/orders", headers=headers, body=body).allowed
    assert len(cache._decisions) == cache.entries
    big = json.dumps({"item": "w" * cache.key_bytes, "quantity": 1}).encode()
    before = len(cache._decisions), cache.misses
    for _ in range(2):
        assert policies.check_request("api", method="POST", path="/orders", headers=headers, body=big).allowed
    assert (len(cache._decisions), cache.misses) == before  # evaluated twice, never stored


def test_an_engine_failure_is_not_reused(tmp_path):
    # Division by zero is an evaluation error in OPA (strict builtin errors are off: undefined), so
    # use a conflict instead: two values for one complete rule is a runtime error.
    source = """package envoy.authz
allow := true if input.attributes.request.http.method == "GET"
allow := false if input.attributes.request.http.headers["x-b"] == "1"
"""
    policies = _policy_set(tmp_path, source)
    headers = {"x-b": "1"}
    for _ in range(2):
        decision = policies.check_request("api", method="GET", path="/", headers=headers, body=b"")
        assert not decision.allowed and "could not be evaluated" in decision.reason
    assert len(policies.cache_of("api")._decisions) == 0  # type: ignore[union-attr]


def test_the_cache_can_be_switched_off(tmp_path):
    policies = _policy_set(tmp_path, POLICIES["body-schema"], cache=False)
    assert policies.cache_of("api") is None
    headers = {"content-type": "application/json"}
    assert policies.check_request("api", method="POST", path="/orders", headers=headers, body=ORDER).allowed


@pytest.mark.parametrize(("source", "reads"), [
    ("allow if input.attributes.request.http.method == \"GET\"", {HTTP + ("method",)}),
    ("allow if input.attributes.request.http.headers[\"x-a\"] == \"1\"", {HTTP + ("headers", "x-a")}),
    ("allow if { some k; input.attributes.request.http.headers[k] }", {HTTP + ("headers",)}),
    ("allow if input.parsed_path[0] == \"a\"", {("parsed_path",)}),
    ("allow if input.attributes.request.http.headers[`x-a`]", {HTTP + ("headers",)}),
    # A space breaks the reference we follow: the shorter path reads more, never less.
    ("allow if input.parsed_body .x", {("parsed_body",)}),
    ("import input.attributes.request.http as h\nallow if h.method == \"GET\"", {HTTP + ("method",)}),
    ("import input.attributes.request.http\nallow if http.headers.host", {HTTP + ("headers", "host")}),
    # Comments, strings and fields named input are not reads.
    ("# input.everything\nallow if { x := {\"input\": 1}; x.input == 1; input.a }", {("a",)}),
])
def test_reads_follow_the_references_written(source, reads):
    assert input_reads(f"package envoy.authz\n{source}\n") == frozenset(reads)


@pytest.mark.parametrize("source", [
    "allow if count(input) > 0",
    "allow if f(input)\nf(x) if x.a",
    "allow if { input.a with input as {\"a\": true} }",
    "allow if { data.x.y with input.a as 1 }",
    "import input as everything\nallow if everything.a",
    "import input[\"a\"]\nallow if true",
    "allow if $\"{input.a}\" == \"1\"",
    "allow if input [\"a\"]",
])
def test_reads_that_cannot_be_bounded_are_everything(source):
    assert input_reads(f"package envoy.authz\n{source}\n") is None


@pytest.mark.parametrize(("source", "deterministic"), [
    ("allow if time.now_ns() > 0", False),
    ("allow if http.send({\"method\": \"GET\", \"url\": \"http://x\"}).status_code == 200", False),
    ("allow if io.jwt.decode_verify(input.t, {\"secret\": \"s\"})[0]", False),
    ("allow if uuid.rfc4122(\"a\") != \"\"", False),
    ("allow if opa.runtime().env.X == \"1\"", False),
    ("allow if net.lookup_ip_addr(\"x\")", False),
    ("allow if startswith(input.a, \"time.\")", True),
    ("import input.attributes.request.http\nallow if http.method == \"GET\"", True),
])
def test_nondeterministic_builtins_are_recognised(source, deterministic):
    assert is_deterministic(f"package envoy.authz\n{source}\n") is deterministic


def test_pruning_keeps_only_the_read_parts():
    document = build_input(method="POST", path="/a/b?q=1", headers={"host": "h", "x-a": "1", "x-b": "2"},
                           body=b"{}")
    pruner = InputPruner(frozenset({HTTP + ("headers", "x-a"), HTTP + ("method",), ("parsed_query",),
                                    HTTP + ("headers", "absent"), ("parsed_path", "not-an-object")}))
    assert pruner.prune(document) == {
        "attributes": {"request": {"http": {"headers": {"x-a": "1"}, "method": "POST"}}},
        "parsed_query": {"q": ["1"]},
        "parsed_path": ["a", "b"],
    }


def _envoy_key(names: tuple[str, ...], method: str, path: str, headers: dict[str, str], body: bytes) -> tuple:
    """What the Lua cache in Envoy keys on (`:authority` is the host header on HTTP/1.1)."""
    return (method, path, tuple(headers.get("host" if n == ":authority" else n) for n in names), body)


@pytest.mark.parametrize("name", sorted(set(POLICIES) - {"whole-input", "no-admin-headers", "header-count"}))
def test_envoy_cache_key_determines_everything_the_policy_reads(name):
    """Requests that agree on Envoy's key must agree on the pruned input — else one's cached allow
    would cover the other."""
    reads = input_reads(POLICIES[name])
    names = request_key_headers(reads)
    assert reads is not None and names is not None
    pruner = InputPruner(reads)
    seen: dict[tuple, str] = {}
    corpus = _corpus() + [(m, p, {**h, "x-request-id": "other", "user-agent": "u"}, b) for m, p, h, b in _corpus()]
    for method, path, headers, body in corpus:
        try:
            pruned = json.dumps(pruner.prune(build_input(method=method, path=path, headers=headers, body=body)),
                                sort_keys=True)
        except InputError:
            pruned = "input error"
        key = _envoy_key(names, method, path, headers, body)
        assert seen.setdefault(key, pruned) == pruned, (name, key)
    assert len(seen) < len(corpus), "no two requests shared a key: the test proves nothing"


@pytest.mark.parametrize(("source", "names"), [
    (POLICIES["body-schema"], ("content-type",)),
    (POLICIES["alias-and-brackets"], ("authorization", "content-type", "x-api-key")),
    (POLICIES["request-id"], ("content-type", "x-request-id")),
    ("package envoy.authz\nallow if input.attributes.request.http.host == \"a\"", (":authority", "content-type")),
    # Names no request can carry are always undefined: no place in the key, nothing to render.
    ("package envoy.authz\nallow if input.attributes.request.http.headers[\"X-Up\"]\n"
     "allow if input.attributes.request.http.headers[\"a\\\" os.exit() \\\"\"]", ("content-type",)),
    (POLICIES["no-admin-headers"], None),
    (POLICIES["whole-input"], None),
    ("package envoy.authz\nallow if input.attributes.request.http.headers.cookie == \"a=1\"", None),
    ("package envoy.authz\nallow if input.attributes.source.address.socketAddress.address == \"1.2.3.4\"", None),
    ("package envoy.authz\nallow if input.attributes.request.http.headers == {}", None),
])
def test_envoy_cache_key_headers(source, names):
    assert request_key_headers(input_reads(source)) == names


def test_envoy_caches_only_policies_that_are_functions_of_what_it_keys_on():
    def planned(source: str, **options) -> InboundEndpoint:
        return plan_endpoint(InboundEndpoint("api", 8080, "p.rego", source), use_rbac=False, **options)

    assert planned(POLICIES["body-schema"]).authz_cache_headers == ("content-type",)
    assert planned(POLICIES["body-schema"], use_authz_cache=False).authz_cache_headers is None
    assert planned("package envoy.authz\nallow if time.now_ns() % 2 == 0\n").authz_cache_headers is None
    assert planned(POLICIES["no-admin-headers"]).authz_cache_headers is None
    hostile = 'package envoy.authz\nallow if input.attributes.request.http.headers["x\\" os.exit(1) \\""]\n'
    model = ProxyModel(inbound=(planned(hostile),), inbound_tls=None, inbound_port=0, authz_port=1)
    lua = json.dumps(render_bootstrap(model))
    assert "envoy.filters.http.lua" in lua and "os.exit" not in lua
