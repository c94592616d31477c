"""The deployment spec's hash and what is read from a template, without a CGS."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sidecars.common.deploymentspec import template_sha256
from sidecars.common.errors import ConfigError, RemoteServiceError
from sidecars.governance.deployment import (
    DeploymentNotAccepted,
    cce_policy_host_data,
    contract_of_template,
    first_difference,
    read_template,
    verify_deployment,
)

POLICY = "package policy\napi_version := \"0.10.0\"\n"


def _template(**env: str) -> dict:
    spec = json.dumps({"contract": {"id": "collab"}})
    return {"$schema": "s", "resources": [{"type": "Microsoft.ContainerInstance/containerGroups", "properties": {
        "confidentialComputeProperties": {"ccePolicy": base64.b64encode(POLICY.encode()).decode()},
        "initContainers": [{"name": "fw", "properties": {"environmentVariables": [
            {"name": "CCR_SPEC", "value": spec}]}}],
        "containers": [{"name": "skr", "properties": {"environmentVariables": [
            {"name": "CCR_SPEC", "value": spec}, *({"name": k, "value": v} for k, v in env.items())]}}]}}]}


def test_the_hash_is_of_canonical_json_so_layout_does_not_count_and_values_do():
    template = _template()
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    assert template_sha256(template) == hashlib.sha256(canonical).hexdigest()
    assert template_sha256(json.loads(json.dumps(template, indent=3, sort_keys=True))) == template_sha256(template)
    assert template_sha256(_template(CCR_DEBUG="1")) != template_sha256(template)
    assert template_sha256({"a": 1}) != template_sha256({"a": 1.0}) != template_sha256({"a": True})


def test_first_difference_names_the_changed_value():
    assert first_difference(_template(), _template(CCR_DEBUG="1")) == \
        "$.resources[0].properties.containers[0].properties.environmentVariables (length 1 → 2)"
    assert first_difference({"a": {"b": 1}}, {"a": {"b": 2}}) == "$.a.b"
    assert first_difference({"a": 1}, {"a": 1, "z": 0}) == "$.z (added)"


def test_what_a_template_says_host_data_and_contract():
    assert cce_policy_host_data(_template()) == hashlib.sha256(POLICY.encode()).hexdigest()
    assert contract_of_template(_template()) == "collab"
    two = _template()
    two["resources"][0]["properties"]["initContainers"][0]["properties"]["environmentVariables"][0]["value"] = \
        json.dumps({"contract": {"id": "other"}})
    assert contract_of_template(two) is None
    for hostile in ({"resources": "x"}, {"resources": [{"type": "Microsoft.ContainerInstance/containerGroups"}]},
                    {"resources": [{"type": "Microsoft.ContainerInstance/containerGroups", "properties": {
                        "confidentialComputeProperties": {"ccePolicy": "not base64!"}}}]}):
        with pytest.raises(ConfigError, match="no single Confidential container group"):
            cce_policy_host_data(hostile)
        assert contract_of_template(hostile) is None


@pytest.mark.parametrize(("content", "expected"), [
    ("[1, 2]", "expected an ARM template"), ("{}", "expected an ARM template"), ("{", "is not JSON"),
    ("[" * 100 + "]" * 100, "nested deeper"), (b"\xff", "is not UTF-8"),
])
def test_a_hostile_template_file_is_one_line(tmp_path, content, expected):
    path = tmp_path / "t.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=expected) as refused:
        read_template(path)
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="No such file"):
        read_template(tmp_path / "missing.json")


class _HostileCgs:
    """A CGS that answers POST …/deploymentspec with whatever the test sets (status, body chunks)."""

    def __init__(self):
        self.status, self.chunks = 200, [b"{}"]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in outer.chunks:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def _hostile_server():
    cgs = _HostileCgs()
    yield cgs
    cgs.server.shutdown()


@pytest.fixture
def hostile_cgs(_hostile_server):
    _hostile_server.status, _hostile_server.chunks = 200, [b"{}"]
    return _hostile_server


@pytest.mark.parametrize(("status", "chunks", "error", "expected"), [
    (200, [b" " * 65536] * 40, RemoteServiceError, "over 2097152 bytes"),  # 2.5 MiB: refused past the cap
    (200, [b"{nope"], RemoteServiceError, "is not JSON"),
    (200, [b'{"data": [], "proposalIds": []}'], RemoteServiceError, "is not {proposalIds"),
    (200, [b'{"data": {}, "proposalIds": "x"}'], RemoteServiceError, "is not {proposalIds"),
    (200, [b'{"data": {}, "proposalIds": []}'], DeploymentNotAccepted, "has no accepted deployment spec$"),
    (500, [b"oops"], RemoteServiceError, "answered 500"),
    (404, [b"{}"], DeploymentNotAccepted, "does not exist"),
])
def test_what_a_cgs_answers_is_checked_and_never_a_pass(hostile_cgs, status, chunks, error, expected):
    hostile_cgs.status, hostile_cgs.chunks = status, chunks
    with pytest.raises(error, match=expected) as refused:
        verify_deployment(hostile_cgs.url, "c", _template())
    assert "\n" not in str(refused.value)


def test_a_cgs_that_accepted_another_template_refuses_this_one(hostile_cgs):
    hostile_cgs.chunks = [json.dumps({"data": _template(CCR_DEBUG="1"), "proposalIds": []}).encode()]
    with pytest.raises(DeploymentNotAccepted, match=r"proposal \?\): first difference at \$\.resources"):
        verify_deployment(hostile_cgs.url, "c", _template())
    assert verify_deployment(hostile_cgs.url, "c", _template(CCR_DEBUG="1")).proposal_id == ""
    with pytest.raises(RemoteServiceError, match="unreachable"):
        verify_deployment("http://127.0.0.1:9", "c", _template())
