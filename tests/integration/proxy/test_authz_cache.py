"""Envoy's decision cache (a Lua filter in front of ext_authz) attacked through the real proxy: once an
allow is cached, requests that differ in any part the policy reads must still be judged — and denied."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

from sidecars.proxy.envoy import AUTHZ_DOWN_BODY, AUTHZ_REUSABLE_HEADER

from .conftest import InboundClient, request

POLICY = """package envoy.authz
import input.attributes.request.http
default allow := false
allow if {
	http.method == "POST"
	input.parsed_path == ["orders"]
	http.headers["x-api-key"] == "k1"
	startswith(http.headers["content-type"], "application/json")
	object.keys(input.parsed_body) == {"item", "quantity"}
	is_number(input.parsed_body.quantity)
	input.parsed_body.quantity <= 10
}
"""
GOOD = json.dumps({"item": "apple", "quantity": 2}).encode()
HEADERS = {"content-type": "application/json", "x-api-key": "k1"}


def _authz_calls(proxy) -> tuple[int, int]:
    """(checks Envoy asked the server, checks the cache answered), from Envoy's own counters."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.ports.admin}/stats?filter=ext_authz", timeout=5) as resp:
        stats = dict(line.split(": ", 1) for line in resp.read().decode().splitlines() if ": " in line)
    asked = sum(int(stats.get(f"http.inbound_api.ext_authz.{kind}", 0)) for kind in ("ok", "denied", "error"))
    return asked, int(stats.get("http.inbound_api.ext_authz.disabled", 0))


def test_a_cached_allow_never_covers_a_request_the_policy_denies(start_proxy, app, room_ca):
    ca, _ = room_ca
    proxy = start_proxy(app, source=POLICY)
    client = InboundClient(proxy, ca)
    for _ in range(3):
        assert client.request("POST", "/orders", body=GOOD, headers=HEADERS)[0] == 200
    asked, cached = _authz_calls(proxy)
    assert cached >= 2, "the cache was not exercised"
    attacks = [
        ("POST", "/orders", json.dumps({"item": "apple", "quantity": 2, "admin": 1}).encode(), HEADERS),
        ("POST", "/orders", json.dumps({"item": "apple", "quantity": 20}).encode(), HEADERS),
        ("POST", "/orders", json.dumps({"item": "apple", "quantity": 9}).encode().replace(b"9", b"99"), HEADERS),
        ("POST", "/orders", GOOD, {**HEADERS, "content-type": "text/plain"}),
        ("POST", "/orders", GOOD, {**HEADERS, "x-api-key": "k2"}),
        ("POST", "/orders", GOOD, [("content-type", "application/json"), ("x-api-key", "k1"), ("X-Api-Key", "k2")]),
        ("POST", "/orders", GOOD, [("content-type", "application/json")]),
        ("PUT", "/orders", GOOD, HEADERS),
        ("POST", "/orders/", GOOD, HEADERS),
        ("POST", "/orders/x/..", GOOD, HEADERS),
    ]
    for method, path, body, headers in attacks * 2:
        status, _, _ = client.request(method, path, body=body, headers=headers)
        assert status == 403, (method, path, body, headers)
    assert [(r.method, r.path, r.body) for r in app.received] == [("POST", "/orders", GOOD)] * 3
    assert not any(AUTHZ_REUSABLE_HEADER in r.headers for r in app.received)  # the server's mark stays in Envoy
    # Each attack was judged by the policy both times: denials are never cached.
    assert _authz_calls(proxy)[0] == asked + 2 * len(attacks)


def test_an_allow_that_adds_headers_is_judged_every_time(start_proxy, app, room_ca):
    ca, _ = room_ca
    source = ('package envoy.authz\nallow := {"allowed": true, "headers": {"x-ccr-user": u}} if {\n'
              '\tu := input.attributes.request.http.headers["x-user"]\n}\n')
    proxy = start_proxy(app, source=source)
    client = InboundClient(proxy, ca)
    for _ in range(3):
        assert client.request("GET", "/me", headers={"x-user": "alice"})[0] == 200
    assert [r.headers.get("x-ccr-user") for r in app.received] == ["alice"] * 3
    assert _authz_calls(proxy) == (3, 0)


def test_with_the_authorization_server_gone_only_allows_already_given_pass(start_proxy, app, room_ca):
    ca, _ = room_ca
    proxy = start_proxy(app, "allow-get-hello.rego")
    assert request(proxy, ca, "GET", "/hello")[0] == 200
    assert request(proxy, ca, "GET", "/admin")[0] == 403
    os.kill(proxy.authz.pid, signal.SIGKILL)
    proxy.authz.popen.wait(timeout=5)
    # The same request in every part the policy reads: the policy's answer, from Envoy's cache.
    assert request(proxy, ca, "GET", "/hello", headers={"x-request-id": "another"})[0] == 200
    for path in ("/admin", "/hello?x=1", "/hello/"):
        status, body, _ = request(proxy, ca, "GET", path)
        assert status == 503 and body.decode() == AUTHZ_DOWN_BODY, path
    assert app.paths() == ["/hello", "/hello"]
