"""Fixtures for the telemetry sidecar's integration tests: Azurite (real blob storage emulator), a
governance endpoint speaking the governance sidecar's API shape, and the telemetry sidecar as a process.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from sidecars.common.deks import save_dek_file
from sidecars.common.objectformat import DataKey
from sidecars.common.process import ManagedProcess, file_exists
from sidecars.common.tls import LocalCA
from sidecars.emulators.azurite import ACCOUNT_KEY, ACCOUNT_NAME, start_azurite

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


@dataclass
class Azurite:
    url: str  # account URL, e.g. https://127.0.0.1:P/devstoreaccount1
    ca_file: str  # the spec's storage URLs are https (sidecars/spec.py): Azurite serves TLS from a test CA

    def service(self) -> BlobServiceClient:
        return BlobServiceClient(self.url, credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
                                 connection_verify=self.ca_file)

    def blobs(self, container: str) -> dict[str, bytes]:
        client = self.service().get_container_client(container)
        if not client.exists():
            return {}
        return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    ca = LocalCA.create(tmp_path_factory.mktemp("azurite-ca"))
    with start_azurite(tls=ca.issue_server_cert("azurite"), ca_file=str(ca.cert_file),
                       log_path=tmp_path_factory.mktemp("azurite") / "azurite.log") as running:
        yield Azurite(running.blob_url, str(ca.cert_file))


@dataclass
class Governance:
    """The governance sidecar's consent and audit API, with the answers a test chooses."""

    url: str
    consent: dict[str, str] = field(default_factory=lambda: {"telemetry": "disabled", "logging": "disabled"})
    checks: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    audit_fails: bool = False


@pytest.fixture
def governance() -> Iterator[Governance]:
    state = Governance("")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            option = self.path.removeprefix("/consentcheck/")
            if option not in ("execution", "logging", "telemetry"):
                return self._reply(404, {"error": {"code": "NotFound", "message": self.path}})
            state.checks.append(option)
            status = state.consent.get(option, "disabled")
            code = "Enabled" if status == "enabled" else "ContractOptionDisabled"
            return self._reply(200, {"status": status, "reason": {"code": code, "message": f"{option} is {status}"}})

        def do_PUT(self):  # noqa: N802
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if url.path != "/events":
                return self._reply(404, {"error": {"code": "NotFound", "message": url.path}})
            if state.audit_fails:
                return self._reply(503, {"error": {"code": "ServiceUnavailable", "message": "CGS unreachable"}})
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            state.events.append({"id": query.get("id"), "scope": query.get("scope"), "data": body})
            return self._reply(200, {})

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


SPEC = """
apiVersion: ccr/v1
name: demo-room
contract:
  id: contract-1
  governance: {endpoint: "https://127.0.0.1:9/"}
maa_endpoint: "https://127.0.0.1:9/"
application:
  name: demo-app
  image: "localhost/demo@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  resources: {cpu: 1, memory_gb: 1}
telemetry:
  telemetry_sink:
    store: {account_url: "${storage_url}", container: "${telemetry_container}"}
    encryption: {mode: CSE, key: {vault_url: "https://127.0.0.1:9/", kek_name: kek, dek_secret_name: telemetry-dek,
                 maa_endpoint: "https://127.0.0.1:9/"}}
  log_sink:
    store: {account_url: "${storage_url}", container: "${log_container}"}
    encryption: {mode: CSE, key: {vault_url: "https://127.0.0.1:9/", kek_name: kek, dek_secret_name: log-dek,
                 maa_endpoint: "https://127.0.0.1:9/"}}
"""


@dataclass
class Room:
    """A running telemetry sidecar with its sinks, keys and the place everything lives."""

    process: ManagedProcess
    http_url: str
    grpc_port: int
    spec: Path
    endpoints: Path
    telemetry_key: Path
    log_key: Path
    telemetry_container: str
    log_container: str
    buffer_dir: Path
    azurite: Azurite

    def otlp_env(self, protocol: str = "http/protobuf") -> dict[str, str]:
        endpoint = self.http_url if protocol.startswith("http") else f"http://127.0.0.1:{self.grpc_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                    "OTEL_METRIC_EXPORT_INTERVAL": "60000", "PYTHONPATH": str(REPO)})
        return env

    def emit_startup(self, protocol: str = "http/protobuf", fail_at: str | None = None) -> None:
        argv = [sys.executable, HERE / "startup_room.py", "launcher"] + (["--fail-at", fail_at] if fail_at else [])
        emitter = ManagedProcess("startup-room", argv, env=self.otlp_env(protocol))
        emitter.start()
        assert emitter.popen.wait(timeout=60) == 0, emitter.output()

    def hand_over_app_output(self, lines: list[tuple[str, str, str]], app: str = "demo-app") -> None:
        body = "\n".join(json.dumps({"time": t, "stream": s, "line": line}) for t, s, line in lines)
        response = httpx.post(f"{self.http_url}/logs/app", params={"app": app}, content=body,
                              headers={"Content-Type": "application/x-ndjson"})
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": len(lines)}

    def records(self) -> int:
        return httpx.get(f"{self.http_url}/status").json()["records"]


@pytest.fixture
def start_room(azurite, governance, tmp_path) -> Iterator:
    rooms: list[Room] = []

    def start(*extra: str, telemetry_container: str | None = None, log_container: str | None = None,
              dek_files: bool = True) -> Room:
        n = len(rooms)
        suffix = uuid.uuid4().hex[:16]
        telemetry_container = telemetry_container or f"tel-{suffix}"
        log_container = log_container or f"log-{suffix}"
        work = tmp_path / f"room{n}"
        work.mkdir()
        spec = work / "spec.yaml"
        spec.write_text(SPEC)
        endpoints = work / "endpoints.json"
        endpoints.write_text(json.dumps({"storage_url": azurite.url, "ca_bundle": azurite.ca_file,
                                         "telemetry_container": telemetry_container,
                                         "log_container": log_container}))
        telemetry_key, log_key = work / "telemetry-dek.json", work / "log-dek.json"
        save_dek_file(telemetry_key, DataKey.generate())
        save_dek_file(log_key, DataKey.generate())
        ready = work / "ready.json"
        buffer_dir = work / "buffer"
        spec_args = ["--spec", spec, "--endpoints", endpoints]
        key_args = ["--telemetry-dek-file", telemetry_key, "--log-dek-file", log_key] if dek_files else []
        argv = [sys.executable, "-m", "sidecars", "sidecar", "run", "telemetry", *spec_args, *key_args,
                "--ca-bundle", azurite.ca_file,
                "--grpc-port", "0", "--http-port", "0", "--governance-url", governance.url, "--buffer-dir", buffer_dir,
                "--ready-file", ready, *extra]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        process = ManagedProcess("telemetry", argv, ready=file_exists(ready), env=env, cwd=REPO,
                                 log_path=work / "telemetry.log")
        process.start()
        info = json.loads(ready.read_text())
        room = Room(process, info["url"], info["grpc_port"], spec, endpoints, telemetry_key, log_key,
                    telemetry_container, log_container, buffer_dir, azurite)
        rooms.append(room)
        return room

    yield start
    for room in rooms:
        room.process.stop()
