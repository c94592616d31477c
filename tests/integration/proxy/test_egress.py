"""Outbound: the app's HTTP reaches only allow-listed hosts, over TLS the proxy verifies; everything else
is refused with a status and a body that say why."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecars.common.http import TlsFiles
from sidecars.common.tls import LocalCA
from sidecars.proxy.envoy import EGRESS_DENIED_BODY, TCP_DENIED_BODY
from sidecars.proxy.model import EgressHttpRoute


@dataclass
class Upstream:
    port: int
    requests: list[str] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)


def _serve_https(cert: TlsFiles) -> tuple[ThreadingHTTPServer, Upstream]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            upstream.requests.append(f"{self.command} {self.path} host={self.headers.get('host')}")
            data = b"hello from upstream"
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    context.sni_callback = lambda _sock, name, _ctx: upstream.sni.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    upstream = Upstream(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, upstream


@pytest.fixture
def upstreams(tmp_path) -> Iterator[tuple[LocalCA, dict[str, Upstream]]]:
    trusted = LocalCA.create(tmp_path / "trusted", "public CA")
    rogue = LocalCA.create(tmp_path / "rogue", "rogue CA")
    servers = {
        "good": _serve_https(trusted.issue_server_cert("good", ("localhost",))),
        # a certificate from a CA the room does not trust
        "untrusted": _serve_https(rogue.issue_server_cert("untrusted", ("localhost",))),
        # a trusted CA, but the certificate names another host
        "wrong_name": _serve_https(trusted.issue_server_cert("wrong", ("other.example",))),
    }
    yield trusted, {name: upstream for name, (_, upstream) in servers.items()}
    for server, _ in servers.values():
        server.shutdown()
        server.server_close()


def _get(port: int, host: str, path: str = "/data", *, absolute: bool = False) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        target = f"http://{host}{path}" if absolute else path
        conn.request("GET", target, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def _stats(admin_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=ssl") as resp:
        lines = resp.read().decode().splitlines()
    return {name: int(value) for name, _, value in (line.partition(": ") for line in lines) if value.isdigit()}


def test_egress_only_to_allow_listed_hosts_with_verified_tls(start_proxy, upstreams):
    trusted, up = upstreams
    routes = tuple(EgressHttpRoute("localhost", u.port, tls=True) for u in up.values())
    proxy = start_proxy(egress_http=routes, upstream_ca_file=str(trusted.cert_file))
    port = proxy.ports.egress_http

    status, body, _ = _get(port, f"localhost:{up['good'].port}")
    assert (status, body) == (200, b"hello from upstream")
    assert up["good"].requests == [f"GET /data host=localhost:{up['good'].port}"]
    assert up["good"].sni == ["localhost"]

    # Allowed host and port, but the upstream's certificate is not trusted / names another host.
    for name in ("untrusted", "wrong_name"):
        status, body, _ = _get(port, f"localhost:{up[name].port}")
        assert status == 503 and b"over verified TLS" in body and b"CERTIFICATE_VERIFY_FAILED" in body, (name, body)
        assert up[name].requests == [], name
    # Envoy's own account of why: the chain did not verify / the name did not match.
    stats = _stats(proxy.ports.admin)
    assert stats[f"cluster.egress_https_localhost_{up['untrusted'].port}.ssl.fail_verify_error"] >= 1
    assert stats[f"cluster.egress_https_localhost_{up['wrong_name'].port}.ssl.fail_verify_san"] >= 1

    # Not on the list: refused by the proxy itself, whatever the request's form.
    for host, absolute in (("example.org", False), ("example.org", True), (f"127.0.0.1:{up['good'].port}", False),
                           (f"localhost:{up['good'].port + 1}", False)):
        status, body, headers = _get(port, host, absolute=absolute)
        assert (status, body.decode()) == (403, EGRESS_DENIED_BODY), host
        assert headers["x-ccr-refused-host"] == host
    # A CONNECT tunnel would hide the host and skip TLS verification: never established.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"CONNECT localhost:{up['good'].port} HTTP/1.1\r\nHost: localhost:{up['good'].port}\r\n\r\n"
                     .encode())
        assert not conn.recv(4096).startswith(b"HTTP/1.1 200")
    assert len(up["good"].requests) == 1


def test_tcp_egress_refuses_a_destination_not_on_the_list(start_proxy):
    proxy = start_proxy()
    with socket.create_connection(("127.0.0.1", proxy.ports.egress_tcp), timeout=5) as conn:
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
    assert received.decode() == TCP_DENIED_BODY


def test_admin_and_egress_listeners_answer_only_on_127_0_0_1(start_proxy):
    proxy = start_proxy()
    for port in (proxy.ports.admin, proxy.ports.egress_http, proxy.ports.egress_tcp):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # Another address of this host (all of 127/8 is local): nothing listens there.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5)
