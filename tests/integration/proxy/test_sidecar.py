"""`ccr sidecar run proxy`: from a spec to a running, policy-enforcing proxy with a status endpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request

import yaml

from sidecars.common.process import ManagedProcess, file_exists

from .conftest import POLICIES, REPO, InboundClient, gone

VARIABLES = ["--var", "cgs_endpoint=https://127.0.0.1:9000", "--var", "maa_endpoint=https://127.0.0.1:9001",
             "--var", "storage_url=https://127.0.0.1:9002/devstoreaccount1", "--var", "keyvault_url=https://127.0.0.1:9003"]


def _spec(tmp_path, app_port: int):
    spec = yaml.safe_load((REPO / "examples/cleanroomhello-api/spec.yaml").read_text())
    spec["endpoints"][0]["port"] = app_port
    shutil.copy(POLICIES / "allow-get-hello.rego", tmp_path / "allow-get-hello.rego")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sidecar_serves_the_spec_policy_and_status(tmp_path, app):
    spec = _spec(tmp_path, app.port)
    ready = tmp_path / "ready.json"
    ports = ["--inbound-address", "127.0.0.1"] + [
        arg for flag in ("--inbound-port", "--egress-http-port", "--egress-tcp-port", "--admin-port", "--authz-port",
                         "--extproc-port", "--status-port") for arg in (flag, "0")]
    argv = [sys.executable, "-m", "sidecars.cli", "sidecar", "run", "proxy", "--spec", str(spec), *VARIABLES,
            "--run-dir", str(tmp_path / "run"), "--ready-file", str(ready), "--no-rbac", "--authz-workers", "1",
            *ports]
    with ManagedProcess("proxy-sidecar", argv, ready=file_exists(ready), ready_timeout=60):
        info = json.loads(ready.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{info['status_port']}/status", timeout=5) as resp:
            status = json.load(resp)
        assert status["status"] == "ok" and status["envoy"] == "running" and status["authz"] == "running"
        assert status["endpoints"] == {"hello": {"app_port": app.port, "enforcement": "ext_authz",
                                                 "inspect_response": False}}

        class Runtime:  # what InboundClient needs: the bound inbound port
            ports = type("Ports", (), {"inbound": info["ports"]["inbound"]})

        from sidecars.common.tls import LocalCA
        client = InboundClient(Runtime, LocalCA(tmp_path / "run" / "room-ca"))
        assert client.request("GET", "/hello")[0] == 200
        assert client.request("GET", "/other")[0] == 403
        client.close()
        children = status["pids"]
        assert set(children) == {"envoy", "authz"}
    # Stopping the sidecar (SIGTERM) stops what it started.
    for pid in children.values():
        assert gone(pid), f"pid {pid} outlived the sidecar"
    assert app.paths() == ["/hello"]



def test_a_user_mistake_is_one_line(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: Bad Name\n")
    result = subprocess.run([sys.executable, "-m", "sidecars.cli", "sidecar", "run", "proxy", "--spec", str(spec),
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccr sidecar run proxy: error:") and "name" in lines[0]


def test_sidecar_takes_the_spec_from_ccr_spec_as_the_container_group_passes_it(tmp_path):
    from sidecars.room.group import canonical_spec_json
    from sidecars.spec import load_spec

    spec = load_spec(REPO / "examples/cleanroomhello-api/spec.yaml",
                     variables={"cgs_endpoint": "https://127.0.0.1:9000", "maa_endpoint": "https://127.0.0.1:9001",
                                "storage_url": "https://127.0.0.1:9002/devstoreaccount1",
                                "keyvault_url": "https://127.0.0.1:9003"})
    resolved = canonical_spec_json(spec)
    out = tmp_path / "envoy.json"
    empty = tmp_path / "cwd"
    empty.mkdir()

    def render(ccr_spec: str) -> subprocess.CompletedProcess:
        # From an empty directory: the policy comes from CCR_SPEC, there is no file to read.
        return subprocess.run([sys.executable, "-m", "sidecars.cli", "proxy", "render", "--run-dir", str(tmp_path),
                               "-o", str(out)], env={**os.environ, "CCR_SPEC": ccr_spec}, cwd=empty,
                              capture_output=True, text=True, timeout=60)

    result = render(resolved)
    assert result.returncode == 0, result.stderr
    assert "endpoint hello (app port 8080): rbac" in result.stdout
    assert '"/hello"' in out.read_text()
    # The Rego CCR_SPEC carries is the one enforced.
    data = json.loads(resolved)
    data["endpoints"][0]["policy_rego"] = data["endpoints"][0]["policy_rego"].replace('["hello"]', '["bye"]')
    assert render(json.dumps(data)).returncode == 0
    assert '"/bye"' in out.read_text() and '"/hello"' not in out.read_text()
    # A CCR_SPEC that names a policy file but carries no Rego is refused, naming the endpoint.
    del data["endpoints"][0]["policy_rego"]
    result = render(json.dumps(data))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ccr: error: endpoints[0].policy: the spec carries no Rego for allow-get-hello.rego (endpoint hello): load "
        "the spec from its file, which inlines it as policy_rego"]
