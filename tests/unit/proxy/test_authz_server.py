"""The ext_authz server's HTTP side, spoken to the way Envoy does (and the way an attacker on loopback
might): keep-alive, several requests in one write, malformed framing."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from pathlib import Path

import pytest

from sidecars.common.process import ManagedProcess, file_exists
from sidecars.proxy.policies import PolicyConfig

from .conftest import opa_rest_server

POLICIES = Path(__file__).resolve().parents[3] / "policies"


@pytest.fixture(scope="module", params=["opa", "opa-server"])
def authz_port(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("authz")
    with contextlib.ExitStack() as stack:
        opa_url = stack.enter_context(opa_rest_server())[0] if request.param == "opa-server" else None
        config = PolicyConfig({"api": str(POLICIES / "allow-get-hello.rego")}, request.param, opa_url)
        path = config.write(tmp_path / "policies.json")
        ready = tmp_path / "authz.ready"
        stack.enter_context(ManagedProcess(
            "authz", [sys.executable, "-m", "sidecars.proxy.authz", "--config", str(path), "--ready-file", str(ready)],
            ready=file_exists(ready), ready_timeout=30))
        yield json.loads(ready.read_text())["port"]


def _exchange(port: int, data: bytes, responses: int) -> list[bytes]:
    """Send `data`, read until `responses` complete responses (or the server closes)."""
    out: list[bytes] = []
    buffer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        while len(out) < responses:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buffer[:head_end].decode()
                length = int(next(line.split(":")[1] for line in head.split("\r\n")
                                  if line.lower().startswith("content-length")))
                if len(buffer) >= head_end + 4 + length:
                    out.append(buffer[:head_end + 4 + length])
                    buffer = buffer[head_end + 4 + length:]
                    continue
            chunk = conn.recv(65536)
            if not chunk:
                break
            buffer += chunk
    return out


def _check(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} /api{path} HTTP/1.1\r\nhost: room\r\nx-request-id: 1\r\n{extra}content-length: 0\r\n\r\n".encode()


def test_requests_in_one_write_get_answers_in_order(authz_port):
    answers = _exchange(authz_port, _check("/hello") + _check("/other") + _check("/hello", "POST") + _check("/hello"),
                        4)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [
        b"HTTP/1.1 200 OK", b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 200 OK"]
    assert answers[1].endswith(b"denied by the policy (envoy.authz.allow)\n")


def test_an_unknown_endpoint_is_denied(authz_port):
    answer = _exchange(authz_port, b"GET /nope/hello HTTP/1.1\r\nhost: room\r\n\r\n", 1)[0]
    assert answer.startswith(b"HTTP/1.1 403") and b"no policy for endpoint 'nope'" in answer


@pytest.mark.parametrize("bad", [
    b"GARBAGE\r\n\r\n",
    b"GET /api/hello HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /api/hello HTTP/1.1\r\ncontent-length: many\r\n\r\n",
    b"GET /api/hello HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n",
])
def test_malformed_framing_is_denied_and_the_connection_closed(authz_port, bad):
    answers = _exchange(authz_port, bad + _check("/hello"), 2)
    assert len(answers) == 1 and not answers[0].startswith(b"HTTP/1.1 200")
