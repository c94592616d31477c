"""Firewall + the real proxy (Envoy) together in the room: the app's only way out is what the contract
allows, end to end. Envoy runs as uid 0 (exempt) on the room's standard ports 15001-15003."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from sidecars.common.process import ManagedProcess, file_exists
from sidecars.firewall.netns import run_in_netns

from .conftest import APP_PORT, OUTSIDE_V4, ROOM_V4, VARIABLES, spec_data

pytestmark = pytest.mark.root
HERE = Path(__file__).resolve().parent
HTTP_PORT = 8088
POLICY = HERE.parents[2] / "examples/cleanroomhello-api/allow-get-hello.rego"
EGRESS = {"allow": [{"host": OUTSIDE_V4, "port": HTTP_PORT, "protocol": "http"},
                    {"host": OUTSIDE_V4, "port": 5432, "protocol": "tcp"}]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict]

    def do_GET(self) -> None:
        self.seen.append({"peer": self.client_address[0], "path": self.path, "host": self.headers.get("host")})
        body = b"outside web server\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def outside_web(room) -> Iterator[list[dict]]:
    seen: list[dict] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    server = run_in_netns(room.outside, lambda: ThreadingHTTPServer((OUTSIDE_V4, HTTP_PORT), handler))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def envoy_room(room, backend, tmp_path, outside_web):
    spec_file = tmp_path / "spec.yaml"
    data = spec_data(EGRESS)
    data["endpoints"][0]["policy"] = POLICY.name
    (tmp_path / POLICY.name).write_text(POLICY.read_text())
    spec_file.write_text(yaml.safe_dump(data))
    (tmp_path / "variables.json").write_text(json.dumps(VARIABLES))
    ready = tmp_path / "proxy-ready.json"
    argv = ["ip", "netns", "exec", room.name, sys.executable, str(HERE / "proxy_in_room.py"), str(spec_file),
            str(tmp_path), str(ready)]
    # The room's standard proxy ports: the test's own listeners on them make way for Envoy.
    for port in (15001, 15002, 15003):
        room.proxy.pop(port).close()
    room.firewall(backend, _spec(spec_file)).apply()
    with ManagedProcess("proxy-in-room", argv, ready=file_exists(ready), ready_timeout=60,
                        log_path=tmp_path / "proxy.log"):
        yield room


def _spec(path: Path):
    from sidecars.spec import load_spec

    return load_spec(path, variables=VARIABLES)


def test_allowed_http_goes_through_envoy(envoy_room, outside_web):
    result = envoy_room.attack("http", OUTSIDE_V4, str(HTTP_PORT), "/report")
    assert result == {"ok": True, "status": 200, "body": "outside web server\n"}
    assert outside_web == [{"peer": "10.231.0.1", "path": "/report", "host": f"{OUTSIDE_V4}:{HTTP_PORT}"}]


def test_http_for_another_host_is_refused_by_envoy(envoy_room, outside_web):
    result = envoy_room.attack("http", OUTSIDE_V4, str(HTTP_PORT), "/exfiltrate", "evil.example.com")
    assert result["ok"] and result["status"] >= 400
    assert outside_web == []


def test_allowed_tcp_goes_through_envoy_and_other_tcp_does_not(envoy_room):
    assert envoy_room.attack("tcp", OUTSIDE_V4, "5432")["banner"] == "outside:5432 original=None"
    assert envoy_room.outside_tcp[5432].seen[0]["peer"] in ("10.231.0.1", "::ffff:10.231.0.1")
    assert envoy_room.attack("tcp", OUTSIDE_V4, "22")["error"] == "ECONNREFUSED"
    assert not envoy_room.outside_tcp[22].seen


def test_inbound_requests_reach_the_app_only_as_the_policy_allows(envoy_room):
    with envoy_room.app("web", str(APP_PORT), ready_port=APP_PORT):
        allowed = envoy_room.from_outside("http", ROOM_V4, str(APP_PORT), "/hello")
        assert allowed == {"ok": True, "status": 200, "body": "hello from the app: /hello\n"}
        denied = envoy_room.from_outside("http", ROOM_V4, str(APP_PORT), "/secret")
        assert denied["ok"] and denied["status"] == 403
