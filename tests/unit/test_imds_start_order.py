"""The room's containers start in no order (Confidential ACI starts a group's containers together; `ccr aci
run` showed volumes asking identity for a token before identity listened, and failing the mount for good)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from sidecars.common.errors import RemoteServiceError
from sidecars.common.imds import ImdsCredential


class _Token(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"access_token": "t0ken", "expires_on": str(int(time.time()) + 600)}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_token_is_had_once_the_identity_sidecar_listens():
    port = _free_port()
    servers: list[HTTPServer] = []

    def late_start():
        time.sleep(0.6)
        servers.append(HTTPServer(("127.0.0.1", port), _Token))
        servers[0].serve_forever()

    threading.Thread(target=late_start, daemon=True).start()
    try:
        token = ImdsCredential(f"http://127.0.0.1:{port}", start_wait_s=10).get_token("https://vault.azure.net/.default")
        assert token.token == "t0ken"
    finally:
        if servers:
            servers[0].shutdown()


def test_nothing_listening_is_one_line_after_the_wait():
    started = time.monotonic()
    with pytest.raises(RemoteServiceError, match="unreachable"):
        ImdsCredential(f"http://127.0.0.1:{_free_port()}", start_wait_s=0.5).get_token("https://vault.azure.net")
    assert 0.5 <= time.monotonic() - started < 5


def test_a_503_while_the_room_starts_is_tried_again():
    answers = iter([503, 503, 200])

    class Flaky(_Token):
        def do_GET(self):  # noqa: N802
            status = next(answers)
            if status == 200:
                return super().do_GET()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

    server = HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        credential = ImdsCredential(f"http://127.0.0.1:{server.server_address[1]}", start_wait_s=10)
        assert credential.get_token("https://storage.azure.com/.default").token == "t0ken"
    finally:
        server.shutdown()
