"""A stand-in OPA server for the `opa-server` engine: OPA's REST API shape (`PUT /v1/policies/{id}` with
the Rego text, `POST /v1/data/{path}` with `{"input"}` → `{"result"}`, absent when undefined; errors as
`{"code", "message"}`) with the real OPA engine behind it. No opa binary is obtainable here, so this
checks that the client path speaks OPA's protocol and maps its answers, not OPA's server itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecars.common.rego import RegoEngine, RegoPolicyError


class _OpaRestHandler(BaseHTTPRequestHandler):
    engine: RegoEngine
    calls: list[tuple[str, str]]

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_PUT(self) -> None:
        self.calls.append(("PUT", self.path))
        if not self.path.startswith("/v1/policies/"):
            return self._reply(404, {"code": "resource_not_found", "message": "not found"})
        try:
            self.engine.add_policy(self.path.removeprefix("/v1/policies/"), self._body().decode())
        except RegoPolicyError as exc:
            return self._reply(400, {"code": "invalid_parameter", "message": exc.message, "errors": []})
        self._reply(200, {})

    def do_POST(self) -> None:
        self.calls.append(("POST", self.path))
        if not self.path.startswith("/v1/data/"):
            return self._reply(404, {"code": "resource_not_found", "message": "not found"})
        document = self.path.removeprefix("/v1/data/").replace("/", ".")
        request = json.loads(self._body() or b"{}")
        result = self.engine.evaluate(document, request.get("input"))
        self._reply(200, {} if result is None else {"result": result})

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def fake_opa_server() -> Iterator[tuple[str, list]]:
    with opa_rest_server() as server:
        yield server


@contextmanager
def opa_rest_server() -> Iterator[tuple[str, list]]:
    """A fresh server (its own engine): (base URL, the calls it received)."""
    calls: list[tuple[str, str]] = []
    handler = type("Handler", (_OpaRestHandler,), {"engine": RegoEngine(), "calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()
    server.server_close()
