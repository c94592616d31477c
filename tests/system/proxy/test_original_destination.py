"""The proxy behind a REDIRECT, in a network namespace this test builds: the app's (uid 1000) TCP is
redirected to the egress listeners, and Envoy recovers the original destination (SO_ORIGINAL_DST) to
let through only the contract's ip:port and hosts. The nftables rules here are a minimal stand-in for
the firewall sidecar's, only to produce real redirected connections. The upstreams live outside the room,
in a second namespace on a veth link (the spec refuses egress to loopback: that is the room itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from sidecars.common.process import ManagedProcess, file_exists
from sidecars.proxy.envoy import EGRESS_DENIED_BODY, TCP_DENIED_BODY

pytestmark = pytest.mark.root

APP_UID = 1000

SERVERS = textwrap.dedent("""
    import json, socket, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def echo(sock, prefix=b"echo:"):
        while True:
            conn, _ = sock.accept()
            conn.sendall(prefix + conn.recv(100))
            conn.close()

    address = sys.argv[2]
    sockets = []
    for _ in range(2):
        s = socket.socket(); s.bind((address, 0)); s.listen(8); sockets.append(s)
        threading.Thread(target=echo, args=(s,), daemon=True).start()
    # The room's resolver (DNS over TCP).
    resolver = socket.socket(); resolver.bind((address, 53)); resolver.listen(8)
    threading.Thread(target=echo, args=(resolver, b"resolver:"), daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"upstream says hi"
            self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass

    http = ThreadingHTTPServer((address, 0), Handler)
    ports = {"allowed": sockets[0].getsockname()[1], "denied": sockets[1].getsockname()[1],
             "http": http.server_address[1]}
    open(sys.argv[1], "w").write(json.dumps(ports))
    http.serve_forever()
""")

CLIENT = textwrap.dedent("""
    import json, socket, sys
    out = {}
    outside = sys.argv[4]
    for name, host, port in (("allowed", outside, int(sys.argv[1])), ("denied", outside, int(sys.argv[2])),
                             ("dns", "127.0.0.2", 53)):
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"ping")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            out[name] = data.decode()
    for name, host in (("http_allowed", f"{outside}:{sys.argv[3]}"), ("http_denied", "evil.example")):
        with socket.create_connection((outside, int(sys.argv[3])), timeout=5) as s:
            s.sendall(f"GET / HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            out[name] = data.decode()
    print(json.dumps(out))
""")


def _netns(name: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


ROOM_ADDRESS, OUTSIDE_ADDRESS = "10.231.0.1", "10.231.0.2"


@pytest.fixture
def netns():
    name = f"ccr-proxy-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def room_and_outside():
    """The room's namespace, and an outside one on a veth link: (room, outside)."""
    names = (f"ccr-proxy-in-{os.getpid()}", f"ccr-proxy-out-{os.getpid()}")
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", names[0], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                        "netns", names[1]], check=True)
        for name, address in zip(names, (ROOM_ADDRESS, OUTSIDE_ADDRESS), strict=True):
            subprocess.run(["ip", "-n", name, "addr", "add", f"{address}/30", "dev", "eth0"], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "eth0", "up"], check=True)
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], check=False)


def test_redirected_tcp_and_http_reach_only_the_allow_list(room_and_outside, tmp_path, repo):
    ports_file = tmp_path / "servers.json"
    (tmp_path / "servers.py").write_text(SERVERS)
    netns, outside = room_and_outside
    with ManagedProcess("upstreams", _netns(outside, sys.executable, str(tmp_path / "servers.py"), str(ports_file),
                                            OUTSIDE_ADDRESS), ready=file_exists(ports_file), ready_timeout=20):
        up = json.loads(ports_file.read_text())
        spec = yaml.safe_load((repo / "examples/cleanroomhello-job/spec.yaml").read_text())
        spec["egress"] = {"allow": [{"host": OUTSIDE_ADDRESS, "port": up["allowed"], "protocol": "tcp"},
                                    {"host": OUTSIDE_ADDRESS, "port": up["http"], "protocol": "http"}],
                          "dns": "tcp"}
        spec_path = tmp_path / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        ready = tmp_path / "proxy.ready"
        variables = [arg for name, path in (("cgs_endpoint", ""), ("maa_endpoint", ""), ("keyvault_url", ""),
                                            ("storage_url", "/devstoreaccount1"))
                     for arg in ("--var", f"{name}=https://127.0.0.1:1{path}")]
        argv = _netns(netns, sys.executable, "-m", "sidecars.cli", "sidecar", "run", "proxy", "--spec", str(spec_path),
                      *variables, "--run-dir", str(tmp_path / "run"), "--ready-file", str(ready),
                      "--egress-http-port", "0", "--egress-tcp-port", "0", "--admin-port", "0",
                      "--status-port", "0", "--dns-resolver", OUTSIDE_ADDRESS)
        with ManagedProcess("proxy", argv, ready=file_exists(ready), ready_timeout=60, cwd=repo):
            proxy = json.loads(ready.read_text())["ports"]
            tcp_ports = f"{up['allowed']}, {up['denied']}, 53"
            rules = textwrap.dedent(f"""
                table inet ccr_proxy_test {{
                    chain output {{
                        type nat hook output priority -100; policy accept;
                        meta skuid {APP_UID} tcp dport {{ {tcp_ports} }} redirect to :{proxy['egress_tcp']}
                        meta skuid {APP_UID} tcp dport {up['http']} redirect to :{proxy['egress_http']}
                    }}
                }}
            """)
            subprocess.run(_netns(netns, "nft", "-f", "-"), input=rules, text=True, check=True)
            result = subprocess.run(
                _netns(netns, "setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", "--clear-groups",
                       "/usr/bin/python3", "-c", CLIENT, str(up["allowed"]), str(up["denied"]),
                       str(up["http"]), OUTSIDE_ADDRESS),
                capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            seen = json.loads(result.stdout)
    assert seen["allowed"] == "echo:ping"
    # DNS over TCP to an address of the app's choosing reaches the room's resolver, nothing else.
    assert seen["dns"] == "resolver:ping"
    assert seen["denied"] == TCP_DENIED_BODY
    assert seen["http_allowed"].startswith("HTTP/1.1 200") and seen["http_allowed"].endswith("upstream says hi")
    assert seen["http_denied"].startswith("HTTP/1.1 403") and seen["http_denied"].endswith(EGRESS_DENIED_BODY)


APPS = textwrap.dedent("""
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def serve(name):
        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                self.rfile.read(int(self.headers.get("content-length", "0")))
                body = f"{name} got {self.command} {self.path}".encode()
                self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = _answer
            def log_message(self, *a): pass
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_address[1]

    ports = {"hello": serve("hello"), "orders": serve("orders")}
    open(sys.argv[1], "w").write(json.dumps(ports))
    threading.Event().wait()
""")

INBOUND_CLIENT = textwrap.dedent("""
    import http.client, json, ssl, sys
    context = ssl.create_default_context(cadata=sys.argv[1])
    out = []
    for port, method, path, body in json.loads(sys.argv[2]):
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
        conn.request(method, path, body=body, headers={"content-type": "application/json"} if body else {})
        response = conn.getresponse()
        out.append([response.status, response.read().decode()])
        conn.close()
    print(json.dumps(out))
""")


def test_redirected_inbound_connections_meet_their_own_endpoint_policy(netns, tmp_path, repo):
    ports_file = tmp_path / "apps.json"
    (tmp_path / "apps.py").write_text(APPS)
    with ManagedProcess("apps", _netns(netns, sys.executable, str(tmp_path / "apps.py"), str(ports_file)),
                        ready=file_exists(ports_file), ready_timeout=20):
        apps = json.loads(ports_file.read_text())
        spec = yaml.safe_load((repo / "examples/cleanroomhello-api/spec.yaml").read_text())
        spec["endpoints"] = [{"name": "hello", "port": apps["hello"], "policy": "allow-get-hello.rego"},
                             {"name": "orders", "port": apps["orders"], "policy": "allow-post-json-schema.rego"}]
        for policy in ("allow-get-hello.rego", "allow-post-json-schema.rego"):
            (tmp_path / policy).write_text((repo / "policies" / policy).read_text())
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
        ready = tmp_path / "proxy.ready"
        argv = _netns(netns, sys.executable, "-m", "sidecars.cli", "sidecar", "run", "proxy",
                      "--spec", str(tmp_path / "spec.yaml"), "--var", "cgs_endpoint=https://127.0.0.1:1",
                      "--var", "maa_endpoint=https://127.0.0.1:1", "--var", "storage_url=https://127.0.0.1:1/a",
                      "--var", "keyvault_url=https://127.0.0.1:1", "--run-dir", str(tmp_path / "run"),
                      "--ready-file", str(ready), "--inbound-port", "0", "--egress-http-port", "0",
                      "--egress-tcp-port", "0", "--admin-port", "0", "--authz-port", "0", "--status-port", "0")
        with ManagedProcess("proxy", argv, ready=file_exists(ready), ready_timeout=60, cwd=repo):
            info = json.loads(ready.read_text())
            app_ports = f"{apps['hello']}, {apps['orders']}"
            rules = textwrap.dedent(f"""
                table inet ccr_proxy_test {{
                    chain output {{
                        type nat hook output priority -100; policy accept;
                        meta skuid {APP_UID} tcp dport {{ {app_ports} }} redirect to :{info['ports']['inbound']}
                    }}
                }}
            """)
            subprocess.run(_netns(netns, "nft", "-f", "-"), input=rules, text=True, check=True)
            order = json.dumps({"item": "apple", "quantity": 2})
            calls = [(apps["hello"], "GET", "/hello", None), (apps["hello"], "POST", "/orders", order),
                     (apps["orders"], "POST", "/orders", order), (apps["orders"], "GET", "/hello", None)]
            ca_pem = Path(info["ca_file"]).read_text()
            result = subprocess.run(
                _netns(netns, "setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", "--clear-groups",
                       "/usr/bin/python3", "-c", INBOUND_CLIENT, ca_pem, json.dumps(calls)),
                capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            answers = json.loads(result.stdout)
    # Each connection met the policy of the endpoint it was addressed to, over the room's TLS.
    assert answers[0] == [200, "hello got GET /hello"]
    assert answers[1][0] == 403
    assert answers[2] == [200, "orders got POST /orders"]
    assert answers[3][0] == 403
