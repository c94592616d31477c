"""What the confined app tries, run as uid 1000 inside the room's network namespace (stdlib only).

    python3 attacks.py ATTACK [ARGS...]   → one JSON line: {"ok": bool, "error": errno name, ...}

`ok` is true when the attempt got through (a connection, a sent datagram); the tests decide whether
that is allowed. TCP attempts read one line from the peer, which says who answered.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import subprocess
import sys

TIMEOUT = 1.0


def _failure(exc: OSError) -> dict:
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else type(exc).__name__
    return {"ok": False, "error": name}


def tcp(host: str, port: str) -> dict:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect((host, int(port)))
            sock.settimeout(TIMEOUT * 5)  # the answer may come through the proxy from the outside host
            sock.sendall(b"hello from the app\n")
            banner = sock.makefile().readline().strip()
        except OSError as exc:
            return _failure(exc)
    return {"ok": True, "banner": banner}


def http(host: str, port: str, path: str, host_header: str = "") -> dict:
    """A plain HTTP GET (what an app sends to an allowed http host; the proxy adds TLS for https)."""
    import http.client

    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT * 5)
    try:
        conn.request("GET", path, headers={"Host": host_header} if host_header else {})
        response = conn.getresponse()
        return {"ok": True, "status": response.status, "body": response.read().decode(errors="replace")}
    except OSError as exc:
        return _failure(exc)
    finally:
        conn.close()


def udp(host: str, port: str) -> dict:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01",
                        (host, int(port)))
        except OSError as exc:
            return _failure(exc)
    return {"ok": True}


def ping(host: str) -> dict:
    """An unprivileged ICMP echo (ping socket, allowed by net.ipv4.ping_group_range)."""
    v6 = ":" in host
    family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    except OSError as exc:
        return {**_failure(exc), "stage": "socket"}
    with sock:
        sock.settimeout(TIMEOUT)
        echo = bytes([128 if v6 else 8, 0, 0, 0, 0, 0, 0, 1]) + b"ccr"
        try:
            sock.sendto(echo, (host, 0))
            sock.recvfrom(1024)
        except OSError as exc:
            return {**_failure(exc), "stage": "send"}
    return {"ok": True}


def raw(family_name: str) -> dict:
    family = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "packet": socket.AF_PACKET}[family_name]
    proto = socket.htons(3) if family == socket.AF_PACKET else socket.IPPROTO_UDP
    try:
        socket.socket(family, socket.SOCK_RAW, proto).close()
    except OSError as exc:
        return _failure(exc)
    return {"ok": True}


def route(*argv: str) -> dict:
    """`ip route ...` (e.g. replace the default route, or add a route around the firewall)."""
    done = subprocess.run(["ip", "route", *argv], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return {"ok": done.returncode == 0, "error": done.stderr.strip()}


def serve(port: str) -> dict:
    """The app's API: answer each connection with one line, until killed."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::", int(port)))
        listener.listen(16)
        while True:
            conn, peer = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                with contextlib.suppress(OSError):
                    conn.sendall(f"app on port {port}\n".encode())


def web(port: str) -> dict:
    """The app's HTTP API: 200 with a greeting for every GET, until killed."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"hello from the app: {self.path}\n".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
    return {"ok": True}


def batch(attacks_json: str) -> list[dict]:
    """Several attacks in one process (one container run): a JSON list of [attack, *args]."""
    return [ATTACKS[name](*args) for name, *args in json.loads(attacks_json)]


ATTACKS = {"http": http, "tcp": tcp, "udp": udp, "ping": ping, "raw": raw, "route": route, "serve": serve,
           "web": web, "batch": batch}

if __name__ == "__main__":
    print(json.dumps(ATTACKS[sys.argv[1]](*sys.argv[2:])), flush=True)
