"""Inbound: clients reach the app only over TLS 1.3 with the room's certificate, and only with what the
policy allows; responses are judged before they leave; the proxy fails closed."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl

import pytest

from sidecars.common.tls import LocalCA
from sidecars.proxy.envoy import AUTHZ_DOWN_BODY

from .conftest import gone, request, tls_client_context


@pytest.mark.parametrize("engine", ["opa", "regopy"])
def test_allowed_request_reaches_the_app_and_a_denied_one_never_does(start_proxy, app, room_ca, engine):
    ca, _ = room_ca
    proxy = start_proxy(app, "allow-get-hello.rego", engine=engine)
    status, body, _ = request(proxy, ca, "GET", "/hello")
    assert status == 200 and json.loads(body) == {"ok": True, "path": "/hello"}
    for method, path in (("GET", "/admin"), ("POST", "/hello"), ("DELETE", "/hello"), ("GET", "/hello/../admin")):
        status, body, _ = request(proxy, ca, method, path, body=b"x" if method == "POST" else None)
        assert status == 403, (method, path, body)
    assert app.paths() == ["/hello"]


def test_post_reaches_the_app_only_with_a_body_matching_the_schema(start_proxy, app, room_ca):
    ca, _ = room_ca
    proxy = start_proxy(app, "allow-post-json-schema.rego")
    json_type = {"content-type": "application/json"}
    good = json.dumps({"item": "apple", "quantity": 2}).encode()
    status, _, _ = request(proxy, ca, "POST", "/orders", body=good, headers=json_type)
    assert status == 200
    for bad in ({"item": "apple", "quantity": 2, "price": 0}, {"item": "apple", "quantity": 1000}):
        status, _, _ = request(proxy, ca, "POST", "/orders", body=json.dumps(bad).encode(), headers=json_type)
        assert status == 403, bad
    status, body, _ = request(proxy, ca, "POST", "/orders", body=b'{"item": ', headers=json_type)
    assert status == 403 and b"not valid JSON" in body
    # A body too large for the policy to see is refused, not passed on unread.
    huge = json.dumps({"item": "apple", "quantity": 2, "note": "x" * (2 << 20)}).encode()
    status, _, _ = request(proxy, ca, "POST", "/orders", body=huge, headers=json_type)
    assert status == 413
    assert [(r.path, r.body) for r in app.received] == [("/orders", good)]


def test_a_response_with_a_forbidden_field_is_blocked_and_email_redacted(start_proxy, app, room_ca):
    ca, _ = room_ca
    proxy = start_proxy(app, "deny-forbidden-response.rego")
    status, body, _ = request(proxy, ca, "GET", "/secret")
    assert status == 502 and b"ssn" in body and b"123-45-6789" not in body
    status, body, headers = request(proxy, ca, "GET", "/mail")
    assert status == 200 and json.loads(body) == {"name": "alice"}
    assert int(headers["content-length"]) == len(body)
    status, body, _ = request(proxy, ca, "GET", "/plain")
    assert status == 200 and json.loads(body) == {"ok": True, "path": "/plain"}
    # Too large to buffer for inspection: refused, not streamed out uninspected.
    status, body, _ = request(proxy, ca, "GET", "/big-secret")
    assert status >= 500 and b"123-45-6789" not in body
    assert app.paths() == ["/secret", "/mail", "/plain", "/big-secret"]


def test_inbound_tls_is_1_3_with_the_room_certificate(start_proxy, app, room_ca, tmp_path):
    ca, _ = room_ca
    proxy = start_proxy(app, "allow-get-hello.rego")
    port = proxy.ports.inbound
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            tls_client_context(ca).wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1.3"
        issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
        assert issuer["commonName"] == "ccr room CA"
    # A client that does not trust the room's CA refuses the proxy...
    stranger = ssl.create_default_context(cafile=str(LocalCA.create(tmp_path / "other").cert_file))
    with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection(("127.0.0.1", port)) as raw:
        stranger.wrap_socket(raw, server_hostname="localhost")
    # ...and the proxy refuses anything below TLS 1.3.
    old = tls_client_context(ca)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", port)) as raw:
        old.wrap_socket(raw, server_hostname="localhost")
    # Plain HTTP on the TLS port gets no answer from the app.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert not raw.recv(4096).startswith(b"HTTP/1.1 200")
    assert app.paths() == []



def test_authz_killed_fails_closed(start_proxy, app, room_ca):
    # Envoy's decision cache would answer a request allowed before (test_authz_cache.py): judge another.
    ca, _ = room_ca
    proxy = start_proxy(app, "allow-get-hello.rego")
    assert request(proxy, ca, "GET", "/hello")[0] == 200
    os.kill(proxy.authz.pid, signal.SIGKILL)
    proxy.authz.popen.wait(timeout=5)
    status, body, _ = request(proxy, ca, "GET", "/hello?first=time")
    assert status == 503 and body.decode() == AUTHZ_DOWN_BODY
    assert app.paths() == ["/hello"]


def test_authz_workers_die_with_their_parent(start_proxy, app, room_ca, tmp_path):
    import json as _json
    import sys

    from sidecars.common.process import ManagedProcess, file_exists
    from sidecars.proxy.policies import PolicyConfig

    policy = tmp_path / "p.rego"
    policy.write_text("package envoy.authz\nallow := true\n")
    config = PolicyConfig({"api": str(policy)}).write(tmp_path / "policies.json")
    ready = tmp_path / "authz.ready"
    with ManagedProcess("authz", [sys.executable, "-m", "sidecars.proxy.authz", "--config", str(config),
                                  "--workers", "2", "--ready-file", str(ready)],
                        ready=file_exists(ready), ready_timeout=30) as authz:
        port = _json.loads(ready.read_text())["port"]
        workers = [int(line.split()[0]) for line in os.popen(f"ps -o pid= --ppid {authz.pid}").read().splitlines()]
        assert len(workers) == 1
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"GET /api/x HTTP/1.1\r\nhost: a\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        os.kill(authz.pid, signal.SIGKILL)
        assert all(gone(pid) for pid in workers)


def test_response_inspector_killed_fails_closed(start_proxy, app, room_ca):
    ca, _ = room_ca
    proxy = start_proxy(app, "deny-forbidden-response.rego")
    os.kill(proxy.extproc.pid, signal.SIGKILL)
    proxy.extproc.popen.wait(timeout=5)
    status, body, _ = request(proxy, ca, "GET", "/secret")
    assert status >= 500 and b"123-45-6789" not in body


def test_endpoint_without_a_policy_refuses_everything(start_proxy, app, room_ca):
    ca, _ = room_ca
    proxy = start_proxy(app, None)
    status, body, _ = request(proxy, ca, "GET", "/hello")
    assert status == 403 and b"no policy" in body
    assert app.paths() == []


DECISION_OBJECT_POLICY = """package envoy.authz

default allow := false

allow := {"allowed": true, "headers": {"x-ccr-user": input.attributes.request.http.headers["x-user"]}} if {
	input.parsed_path == ["me"]
	input.attributes.request.http.headers["x-user"] == "alice"
}

allow := {"allowed": false, "http_status": 401, "body": "who are you?", "headers": {"www-authenticate": "Bearer"}} if {
	input.parsed_path == ["me"]
	not input.attributes.request.http.headers["x-user"]
}
"""


def test_decision_objects_reach_the_app_and_the_client(start_proxy, app, room_ca):
    ca, _ = room_ca
    proxy = start_proxy(app, source=DECISION_OBJECT_POLICY)
    status, _, _ = request(proxy, ca, "GET", "/me", headers={"x-user": "alice"})
    assert status == 200 and app.received[-1].headers["x-ccr-user"] == "alice"
    status, body, headers = request(proxy, ca, "GET", "/me")
    assert (status, body, headers["www-authenticate"]) == (401, b"who are you?", "Bearer")
    status, _, _ = request(proxy, ca, "GET", "/me", headers={"x-user": "mallory"})
    assert status == 403
    assert app.paths() == ["/me"]
