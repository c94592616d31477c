"""Envoy + authz + a small recording app on loopback, every port picked by the kernel (no root)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sidecars.common.http import TlsFiles
from sidecars.common.tls import LocalCA
from sidecars.proxy.model import InboundEndpoint, ProxyModel
from sidecars.proxy.runtime import ProxyRuntime, plan

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
# Every listener on port 0: the kernel picks, the runtime reads the ports back.
FREE_PORTS = dict(inbound_address="127.0.0.1", inbound_port=0, egress_http_port=0, egress_tcp_port=0,
                  admin_port=0, authz_port=0, extproc_port=0)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingApp:
    """The app behind the proxy: records every request it receives; answers JSON by path."""

    port: int = 0
    received: list[Received] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [r.path for r in self.received]


def _app_handler(app: RecordingApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            app.received.append(Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                         body))
            if self.path.startswith("/big-secret"):
                answer = {"padding": "x" * (3 << 20), "ssn": "123-45-6789"}
            elif self.path.startswith("/secret"):
                answer = {"name": "alice", "ssn": "123-45-6789"}
            elif self.path.startswith("/mail"):
                answer = {"name": "alice", "email": "alice@example.com"}
            else:
                answer = {"ok": True, "path": self.path}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        def log_message(self, *_args) -> None:
            pass

    return Handler


@pytest.fixture
def app() -> Iterator[RecordingApp]:
    recorder = RecordingApp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _app_handler(recorder))
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def room_ca(tmp_path_factory) -> tuple[LocalCA, TlsFiles]:
    """The room's certificate (until the contract CA lands, a CA the room generates)."""
    ca = LocalCA.create(tmp_path_factory.mktemp("room-ca"), "ccr room CA")
    return ca, ca.issue_server_cert("room", ("localhost", "127.0.0.1"))


@pytest.fixture
def start_proxy(tmp_path, room_ca) -> Iterator[Callable[..., ProxyRuntime]]:
    started: list[ProxyRuntime] = []

    def start(app: RecordingApp | None = None, policy: str | None = None, *, use_rbac: bool = False,
              source: str | None = None,
              engine: str = "opa", name: str = "api", **settings) -> ProxyRuntime:
        inbound = ()
        if app is not None:
            if policy:
                source = (POLICIES / policy).read_text()
            inbound = (InboundEndpoint(name, app.port, policy or "", source),)
        model = plan(ProxyModel(inbound=inbound, inbound_tls=room_ca[1], **{**FREE_PORTS, **settings}),
                     use_rbac=use_rbac)
        runtime = ProxyRuntime(model, tmp_path / f"proxy-{len(started)}", engine=engine, authz_workers=1)
        started.append(runtime)
        return runtime.start()

    yield start
    for runtime in started:
        runtime.stop()


def tls_client_context(ca: LocalCA) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert_file))


class InboundClient:
    """HTTPS to the inbound listener over one kept-alive connection (reopened when Envoy closes it),
    sending each path exactly as given."""

    def __init__(self, runtime: ProxyRuntime, ca: LocalCA):
        assert runtime.ports is not None and runtime.ports.inbound
        self.conn = http.client.HTTPSConnection("localhost", runtime.ports.inbound, context=tls_client_context(ca),
                                                timeout=10)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | list[tuple[str, str]] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """`headers` as a list of pairs may repeat a name or set Host itself."""
        try:
            response = self._send(method, path, body, headers)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.conn.close()
            response = self._send(method, path, body, headers)
        data = response.read()
        if response.will_close:
            self.conn.close()
        return response.status, data, {k.lower(): v for k, v in response.getheaders()}

    def _send(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str] | list[tuple[str, str]] | None) -> http.client.HTTPResponse:
        if not isinstance(headers, list):
            self.conn.request(method, path, body=body, headers=headers or {})
            return self.conn.getresponse()
        names = {name.lower() for name, _ in headers}
        self.conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers:
            self.conn.putheader(name, value)
        if body is not None:
            self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders(body)
        return self.conn.getresponse()

    def close(self) -> None:
        self.conn.close()


def request(runtime: ProxyRuntime, ca: LocalCA, method: str, path: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One HTTPS request on a connection of its own."""
    client = InboundClient(runtime, ca)
    try:
        return client.request(method, path, body=body, headers=headers)
    finally:
        client.close()


def gone(pid: int, timeout: float = 5.0) -> bool:
    """For processes that are not our children (a zombie child of ours would still answer kill 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False
