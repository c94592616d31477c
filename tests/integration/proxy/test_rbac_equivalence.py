"""A policy compiled into Envoy's RBAC filter decides exactly as OPA does: the same policy runs both ways,
behind the same Envoy normalisation, over the same tricky requests, and every answer must match."""

from __future__ import annotations

import pytest

from .conftest import POLICIES, InboundClient

PREFIXES_AND_METHODS = """package envoy.authz
import input.attributes.request.http as http
default allow := false
allow if { http.method in {"GET", "HEAD"}; startswith(http.path, "/api/") }
allow if { http.method == "POST"; input.parsed_path == ["api", "v1", "submit"] }
allow if http.path == "/health"
"""

HOSTS = """package envoy.authz
default allow := false
allow if { input.attributes.request.http.host == "api.room"; input.attributes.request.http.method == "GET" }
allow if input.attributes.request.http.host == "admin.room:8443"
"""

HOST_CASES = ["api.room", "API.ROOM", "api.room:443", "api.room.", "admin.room:8443", "admin.room", "other.room",
              "api.room:", "[::1]"]

PATHS = [
    "/hello", "/hello?x=1", "/hello?", "//hello", "///hello", "/hello/", "/HELLO", "/hell%6F", "/hell%6f",
    "/%68ello", "/hello%2F", "/hello%2f", "/./hello", "/x/../hello", "/hello/.", "/hello/..", "/hello#frag",
    "/hello;x", "/hello%00", "/hello%zz", "/hello%", "/hello%20", "/hel%2Flo",
    "/api/x", "/api", "/api/", "/API/x", "/api/../secret", "/api/%2E%2E/secret", "/api%2F..%2Fsecret",
    "/api/v1/submit", "/api/v1/submit/", "/api//v1/submit", "/api/v1/%73ubmit", "/api/v1/submit?x=%2F",
    "/health", "/health?x", "/health/", "/%68ealth", "/", "*",
]
METHODS = ["GET", "HEAD", "POST", "DELETE", "get", "OPTIONS"]


@pytest.mark.parametrize("policy", ["allow-get-hello", "prefixes-and-methods"])
def test_rbac_and_opa_decide_alike(start_proxy, app, room_ca, policy):
    ca, _ = room_ca
    source = PREFIXES_AND_METHODS if policy == "prefixes-and-methods" else (POLICIES / f"{policy}.rego").read_text()
    native = start_proxy(app, source=source, use_rbac=True)
    opa = start_proxy(app, source=source, use_rbac=False)
    assert native.model.inbound[0].enforcement == "rbac"
    assert opa.model.inbound[0].enforcement == "ext_authz"
    allowed = 0
    native_client, opa_client = InboundClient(native, ca), InboundClient(opa, ca)
    for method in METHODS:
        for path in PATHS:
            before = len(app.received)
            rbac_status = native_client.request(method, path)[0]
            rbac_reached = len(app.received) - before
            opa_status = opa_client.request(method, path)[0]
            opa_reached = len(app.received) - before - rbac_reached
            assert (rbac_status, rbac_reached) == (opa_status, opa_reached), (method, path)
            allowed += rbac_reached
    native_client.close()
    opa_client.close()
    # The corpus exercises both sides of the policy.
    assert 0 < allowed < len(METHODS) * len(PATHS) / 2


def test_host_conditions_decide_alike(start_proxy, app, room_ca):
    ca, _ = room_ca
    native = start_proxy(app, source=HOSTS, use_rbac=True)
    opa = start_proxy(app, source=HOSTS, use_rbac=False)
    assert (native.model.inbound[0].enforcement, opa.model.inbound[0].enforcement) == ("rbac", "ext_authz")
    native_client, opa_client = InboundClient(native, ca), InboundClient(opa, ca)
    allowed = 0
    for method in ("GET", "POST"):
        for host in HOST_CASES:
            before = len(app.received)
            rbac_status = native_client.request(method, "/x", headers=[("Host", host)])[0]
            rbac_reached = len(app.received) - before
            opa_status = opa_client.request(method, "/x", headers=[("Host", host)])[0]
            opa_reached = len(app.received) - before - rbac_reached
            assert (rbac_status, rbac_reached) == (opa_status, opa_reached), (method, host)
            allowed += rbac_reached
    native_client.close()
    opa_client.close()
    assert 0 < allowed < 2 * len(HOST_CASES)
